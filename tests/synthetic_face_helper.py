"""A synthetic head made of 3D Gaussians on MediaPipe's canonical face, for the camera tests.

A thin wrapper over ``avat3r_cli.data.synthetic`` (the generator of synthetic training data): the
head is the default identity at an expression, and the head frame is the world frame, so the
landmarks' true 3D positions are the canonical vertices (lips closed, see ``neutral_vertices``).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.data.synthetic import DEFAULT_IDENTITY, HeadModel, HeadSamples
from avat3r_cli.data.synthetic.deformers import JAW_MAX_DEG
from avat3r_cli.io.mediapipe_assets import CanonicalFace

SyntheticHead = HeadSamples  # ``.gaussians_for(camera)``: lit for the camera, back faces dropped


def synthetic_head(
    canonical: CanonicalFace, seed: int = 0, jaw_open_deg: float = 0.0, smile_strength: float = 0.0
) -> HeadSamples:
    """The default identity's head (noise from ``seed``), jaw opened by ``jaw_open_deg``, smiling by ``smile_strength``."""
    identity = dataclasses.replace(DEFAULT_IDENTITY, seed=seed)
    weights = {"jawOpen": jaw_open_deg / JAW_MAX_DEG, "mouthSmileLeft": smile_strength, "mouthSmileRight": smile_strength}
    return HeadModel(identity, canonical).samples(weights)


def head_camera(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0, distance: float = 0.6,
                size: int = 256, fov_deg: float = 30.0) -> Camera:
    """A camera looking at the head origin; yaw/pitch/roll follow ``PoseFit``'s head-angle convention.

    Positive yaw (nose towards image right) puts the camera on the subject's right (-x); positive
    pitch (head tilted down) puts it above the head (-y); roll turns the image about the optical axis.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    eye = distance * torch.tensor([-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    r = math.radians(roll_deg)
    rz = torch.eye(4)
    rz[:2, :2] = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return Camera(intrinsics_from_fov(fov_deg, size, size), rz @ w2c, size, size)
