"""data/synthetic: deterministic synthetic multi-view heads in the dataset layout, read by MediaPipe."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.core.expressions import EXPRESSION_DIM, EXPRESSION_INDEX
from avat3r_cli.data.layout import list_subjects, read_subject
from avat3r_cli.data.synthetic import (
    DEFAULT_IDENTITY,
    DEFORMERS,
    GENERATOR_VERSION,
    build_head,
    deform,
    expression_noise,
    generate_dataset,
    generate_subject,
    head_camera,
    head_model,
    is_input_view,
    neutral_vertices,
    random_expression,
    sample_identity,
    synth_cameras,
)
from avat3r_cli.data.synthetic.appearance import Lighting
from avat3r_cli.data.synthetic.frontal import frontal_codes
from avat3r_cli.data.synthetic.generate import SUBJECT_SEED_STRIDE
from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.preprocess.crop import HEAD_CENTER, head_crop_box
from avat3r_cli.render import render


@pytest.fixture(scope="module")
def analyzer():
    pytest.importorskip("mediapipe", reason="mediapipe is not installed: face analysis cannot run")
    from avat3r_cli.preprocess.face import FaceAnalyzer

    with FaceAnalyzer() as face_analyzer:
        yield face_analyzer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, analyzer):
    root = tmp_path_factory.mktemp("synth") / "data"
    calls = []
    results = generate_dataset(root, subjects=2, seed=3, timesteps=2, cameras=3, resolution=128,
                               analyzer=analyzer, progress=lambda d, t: calls.append((d, t)))
    return root, results, calls


def test_layout_reads_back(dataset):
    root, results, calls = dataset
    assert list_subjects(root) == ["subject_0000", "subject_0001"]
    assert calls[-1] == (12, 12) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"
    for name, summary in zip(list_subjects(root), results):
        subject = read_subject(root / name)
        assert subject.camera_names == ("cam_00", "cam_01", "cam_02")
        # Camera 0 frontal and 1 where a user shoots; 2 all round the head (behind, above or below).
        assert subject.input_views == {"cam_00": True, "cam_01": True, "cam_02": False}
        meta = json.loads((root / name / "synth.json").read_text())
        assert meta["generator_version"] == GENERATOR_VERSION == 10
        assert [meta["camera_draws"][c]["input"] for c in subject.camera_names] == [True, True, False]
        assert subject.timesteps == ("000", "001")
        assert subject.expressions.shape == (2, EXPRESSION_DIM)
        # Every timestep was labelled by MediaPipe on a view (a detection has non-zero scores).
        assert (np.abs(subject.expressions).sum(axis=1) > 0).all() and summary.missed_all == 0
        weights = np.load(root / name / "deformers.npy")
        assert weights.shape == (2, len(DEFORMERS)) and not weights[0].any() and weights[1].any()
        assert json.loads((root / name / "deformers.json").read_text())["names"] == list(DEFORMERS)
        image = np.asarray(Image.open(subject.image_path(1, "cam_02")))
        mask = np.asarray(Image.open(subject.mask_path(1, "cam_02")))
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and mask.shape == (128, 128)
        cam = subject.cameras["cam_00"]
        assert (cam.height, cam.width) == (128, 128) and 10_000 < summary.gaussians < 80_000


def test_masks_are_the_render_alpha(dataset):
    root, results, _ = dataset
    subject = read_subject(root / "subject_0001")
    weights = dict(zip(DEFORMERS, np.load(root / "subject_0001" / "deformers.npy")[1].tolist()))
    identity = results[1].identity
    head = head_model(identity).samples(weights)
    for cam_name in subject.camera_names:
        camera = subject.cameras[cam_name]
        with torch.no_grad():
            alpha = render(head.gaussians(identity.lighting, camera), camera, (0.0, 0.0, 0.0)).alpha[0].numpy()
        mask = np.asarray(Image.open(subject.mask_path(1, cam_name))).astype(np.int32)
        assert np.abs(mask - np.round(alpha * 255)).max() <= 1
        assert mask[0, 0] == 0 and mask[0, -1] == 0 and mask[64, 64] == 255  # background corners, head centre
        assert 0.15 < (mask > 127).mean() < 0.85  # head, neck and some shoulders


def test_preparation_keeps_the_input_flags(dataset, analyzer):
    from avat3r_cli.data.prepare import prepare_subject
    from avat3r_cli.data.prepared import PreparedSubject

    root, _, _ = dataset
    prepared = PreparedSubject(prepare_subject(root / "subject_0001", 32, analyzer))
    assert prepared.input_views.tolist() == [True, True, False]
    assert prepared.metadata["faces_detected"].split("/")[1] == "6"


def test_frontal_codes_re_read_the_written_codes_exactly(dataset, analyzer):
    # The dataset was made with seed 3: subject i has seed 3 * SUBJECT_SEED_STRIDE + i.
    root, _, _ = dataset
    for i, name in enumerate(list_subjects(root)):
        written = read_subject(root / name).expressions
        seed = 3 * SUBJECT_SEED_STRIDE + i
        assert np.array_equal(frontal_codes(seed, 2, 3, 128, analyzer), written), name
        assert np.array_equal(frontal_codes(seed, 2, 3, 128, analyzer, upto=1), written[:1]), name
    with pytest.raises(ValueError, match="upto"):
        frontal_codes(0, 2, 3, 128, analyzer, upto=3)


def test_resumable_skips_complete_subjects(dataset, analyzer):
    root, _, _ = dataset
    png = root / "subject_0000" / "images" / "000" / "cam_00.png"
    before = png.stat().st_mtime_ns
    again = generate_dataset(root, subjects=2, seed=3, timesteps=2, cameras=3, resolution=128, analyzer=analyzer)
    assert again == [None, None] and png.stat().st_mtime_ns == before


def test_deterministic_by_seed(tmp_path):
    for name in ("a", "b"):
        generate_subject(tmp_path / name, seed=11, timesteps=2, cameras=3, resolution=48)
    generate_subject(tmp_path / "c", seed=12, timesteps=2, cameras=3, resolution=48)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 12
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "cameras.json").read_text() == (tmp_path / "b" / "cameras.json").read_text()
    different = [(tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files]
    assert all(different)
    ids = [json.loads((tmp_path / n / "synth.json").read_text())["identity"] for n in ("a", "c")]
    assert ids[0] != ids[1] and ids[0]["skin"] != ids[1]["skin"]


def test_identities_vary():
    ids = [sample_identity(np.random.default_rng(s)) for s in range(60)]
    assert len({i.hair_style for i in ids}) == 3 and len({i.hair_name for i in ids}) >= 4
    tones = [i.skin_tone for i in ids]
    assert min(tones) < 0.15 and max(tones) > 0.85
    scales = np.array([i.scale for i in ids])
    assert scales.min() >= 0.92 * 0.96 - 1e-9 and scales.max() <= 1.08 * 1.04 + 1e-9 and np.ptp(scales) > 0.08
    assert 0.08 <= np.mean([i.glasses is not None for i in ids]) <= 0.35  # a fraction wears glasses
    assert len({i.clothing.pattern for i in ids}) == 4 and len({i.clothing.colour_name for i in ids}) >= 8
    kelvin = [i.lighting.kelvin for i in ids]
    assert min(kelvin) < 3800 and max(kelvin) > 6500
    keys = np.array([i.lighting.key for i in ids])
    assert np.allclose(np.linalg.norm(keys, axis=1), 1.0) and np.ptp(keys[:, 0]) > 1.0  # from either side
    for i in ids:
        json.dumps(i.to_dict())  # the identity goes into synth.json


def _view_angles(cam) -> tuple[float, float]:
    """(yaw, pitch) in degrees of a camera's position seen from the head sphere's centre."""
    d = (cam.center - torch.tensor(HEAD_CENTER)).double()
    d = d / d.norm()
    return math.degrees(math.atan2(-d[0], -d[2])), math.degrees(math.asin(-d[1]))


def test_cameras_cover_the_sphere_and_flag_input_views():
    seen = {"behind": 0, "above": 0, "below": 0, "input": 0}
    for seed in range(4):
        cams = synth_cameras(np.random.default_rng(seed), 12, 256)
        axis = cams[0].camera.world_to_cam[2, :3]
        assert torch.allclose(axis, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6) and cams[0].input_view
        rolls = []
        for c in cams:
            yaw, pitch = _view_angles(c.camera)
            assert yaw == pytest.approx(c.yaw_deg, abs=1e-3) or abs(abs(yaw) - 180) < 1e-3
            assert pitch == pytest.approx(c.pitch_deg, abs=1e-3) and -45.001 <= pitch <= 60.001
            assert c.input_view == (abs(yaw) <= 90 and abs(pitch) <= 30) == is_input_view(yaw, pitch)
            seen["behind"] += abs(yaw) > 120
            seen["above"] += pitch > 35
            seen["below"] += pitch < -32
            seen["input"] += c.input_view
            # The head sphere spans 90-100 % of the image, inside it: focal length varies with the framing.
            box = head_crop_box(c.camera)
            assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x0 + box.size <= 256.5 and box.y0 + box.size <= 256.5
            assert 0.9 * 256 - 1 <= box.size <= 256.5
            assert 0.5 <= float(torch.linalg.norm(c.camera.center - torch.tensor(HEAD_CENTER))) <= 0.9
            # Roll: the image's x axis tilts out of the horizontal plane.
            rolls.append(abs(math.degrees(math.asin(float(c.camera.world_to_cam[0, 1])))))
        assert max(rolls) > 1.0 and max(rolls) <= 8.5
    assert seen["behind"] >= 4 and seen["above"] >= 4 and seen["below"] >= 2
    assert 24 <= seen["input"] <= 32  # camera 0 and half of the rest, rounded up, per subject


def test_expressions_are_random_with_small_extra_amplitudes():
    exprs = [random_expression(np.random.default_rng(s)) for s in range(400)]
    assert all(len(e) <= 10 and set(e) <= set(DEFORMERS) for e in exprs)
    assert all(0.0 <= w <= 1.0 for e in exprs for w in e.values())
    assert len({k for e in exprs for k in e}) == len(DEFORMERS)
    # The evaluated expressions are common: each in roughly a third or more of the timesteps.
    for name in ("jawOpen", "mouthSmileLeft", "eyeBlinkRight"):
        assert 0.28 < np.mean([name in e for e in exprs]) < 0.6, name
    assert 0.02 < np.mean([not e for e in exprs]) < 0.2  # some stay neutral
    rng = np.random.default_rng(0)
    for e in exprs[:100]:
        noisy = expression_noise(rng, e)
        assert {k: noisy[k] for k in e} == e  # the chosen deformers are kept as they are
        extra = {k: w for k, w in noisy.items() if k not in e}
        assert all(0.02 <= w <= 0.12 for w in extra.values())
        for pair in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"), ("mouthPucker", "mouthFunnel")):
            assert not set(pair) <= set(noisy), pair
    sizes = [len(expression_noise(rng, {})) for _ in range(200)]
    assert 3.0 < np.mean(sizes) < 7.0  # about a quarter of the 19 deformers twitch


FLAT = Lighting(key=(0.0, 0.0, -1.0), key_colour=(0.0, 0.0, 0.0), ambient=(1.0, 1.0, 1.0), kelvin=6500.0, sheen=0.0)


def _albedo_view(identity, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """``[R, R, 3]`` colours under flat ambient light (albedo, up to the sky term) and ``[R, R]`` alpha."""
    camera = head_camera(yaw, pitch, 0.7, 96)
    head = head_model(identity).samples({})
    with torch.no_grad():
        out = render(head.gaussians(FLAT, camera), camera, (0.0, 0.0, 0.0))
    alpha = out.alpha[0].numpy()
    return out.image.permute(1, 2, 0).numpy() / np.maximum(alpha, 1e-6)[..., None], alpha


@pytest.mark.parametrize("style", ["short", "long", "buzz"])
def test_back_top_and_bottom_look_like_a_head(style):
    """From behind and above the head shows hair, not a face; from below a neck; shoulders round it."""
    identity = dataclasses.replace(DEFAULT_IDENTITY, hair_style=style, hair_volume=0.0015 if style == "buzz" else 0.01)
    skin, hair, shirt = (np.array(c) for c in (identity.skin, identity.hair, identity.clothing.colour))
    palette = np.stack([skin, hair, shirt])

    def classes(colours: np.ndarray) -> np.ndarray:
        return np.argmin(np.linalg.norm(colours[:, None] - palette[None], axis=2), axis=1)  # 0 skin, 1 hair, 2 shirt

    for yaw, pitch in ((180.0, 0.0), (180.0, 60.0), (0.0, 60.0)):
        colours, alpha = _albedo_view(identity, yaw, pitch)
        assert (alpha > 0.5).mean() > 0.45, (yaw, pitch)  # the subject fills the view
        # The head's upper half (image rows above the head sphere's centre, inside the mask).
        head = (alpha[:44] > 0.5)
        kind = classes(colours[:44][head])
        if style == "buzz":  # stubble: a mix of hair and skin, darker than skin
            assert colours[:44][head].mean() < skin.mean() * 0.9, (yaw, pitch)
        else:
            assert (kind == 1).mean() > 0.85 and (kind == 0).mean() < 0.08, (yaw, pitch, np.bincount(kind))
    # From behind, the lower part shows the neck (skin) above the shirt of the shoulders.
    colours, alpha = _albedo_view(identity, 180.0, 0.0)
    column = classes(colours[60:, 40:56].reshape(-1, 3)[(alpha[60:, 40:56] > 0.5).reshape(-1)])
    if style != "long":
        assert (column == 0).mean() > 0.3, np.bincount(column)
    # From above and behind, the shoulders in their shirt round the lower part of the view.
    colours, alpha = _albedo_view(identity, 180.0, 60.0)
    lower = classes(colours[64:].reshape(-1, 3)[(alpha[64:] > 0.5).reshape(-1)])
    assert len(lower) > 1500 and (lower == 2).mean() > 0.3, np.bincount(lower)  # long hair hides some
    # From below: a neck under the chin, skin in the middle of the lower half.
    colours, alpha = _albedo_view(identity, 0.0, -45.0)
    middle = classes(colours[56:80, 40:56].reshape(-1, 3)[(alpha[56:80, 40:56] > 0.5).reshape(-1)])
    assert len(middle) > 300 and (middle == 0).mean() > 0.9


def test_deformers_move_the_right_vertices():
    rest = neutral_vertices(load_canonical_face().vertices)
    assert abs(rest[13, 1] - rest[14, 1]) < 1e-9  # the neutral mouth is closed
    for name in DEFORMERS:
        moved = np.linalg.norm(deform(rest, {name: 1.0}) - rest, axis=1)
        assert moved.max() > 0.002, name
    jaw = deform(rest, {"jawOpen": 1.0})
    assert jaw[14, 1] - jaw[13, 1] > 0.02 and abs(jaw[10, 1] - rest[10, 1]) < 1e-9
    shut = deform(rest, {"eyeBlinkLeft": 1.0})
    assert abs(shut[386, 1] - shut[374, 1]) < 0.001 and abs(shut[159, 1] - rest[159, 1]) < 1e-9
    with pytest.raises(KeyError):
        deform(rest, {"jawOpn": 1.0})


def _scores(analyzer, identity, weights) -> dict[str, float]:
    camera = head_camera(0.0, 0.0, 0.7, 256)
    with torch.no_grad():
        out = render(build_head(identity, weights), camera, (0.55, 0.6, 0.65))
    image = (out.image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    face = analyzer.analyze(image)
    assert face is not None, f"MediaPipe missed the frontal render at {weights}"
    return {name: float(face.blendshapes[EXPRESSION_INDEX[name]]) for name in
            ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight")}


@pytest.mark.parametrize("seed", [0, 1])
def test_mediapipe_reads_the_expressions(analyzer, seed):
    identity = sample_identity(np.random.default_rng(seed))
    neutral = _scores(analyzer, identity, {})
    jaw = _scores(analyzer, identity, {"jawOpen": 1.0})
    smile = _scores(analyzer, identity, {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0})
    blink = _scores(analyzer, identity, {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0})
    print(f"\nseed {seed} neutral {neutral}\n jaw {jaw}\n smile {smile}\n blink {blink}")
    assert jaw["jawOpen"] > 0.3 and neutral["jawOpen"] < 0.15
    smile_sum = smile["mouthSmileLeft"] + smile["mouthSmileRight"]
    assert smile_sum > neutral["mouthSmileLeft"] + neutral["mouthSmileRight"] + 0.5
    blink_sum = blink["eyeBlinkLeft"] + blink["eyeBlinkRight"]
    assert blink_sum > neutral["eyeBlinkLeft"] + neutral["eyeBlinkRight"] + 0.3


def test_synth_command(tmp_path):
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from avat3r_cli.cli.synth_cmd import synth

    app = typer.Typer()
    app.command()(synth)
    out = tmp_path / "ds"
    args = ["-o", str(out), "--subjects", "1", "--timesteps", "1", "--cameras", "2", "--resolution", "48", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["generated"], summary["skipped"], summary["images"]) == (1, 0, 2)
    # A shard counts only its own subjects: subject_0000 belongs to shard 0, not to 1/2.
    shard = [*args[:3], "2", *args[4:], "--shard", "1/2"]
    for generated, skipped in ((1, 0), (0, 1)):
        result = CliRunner().invoke(app, shard)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert (summary["generated"], summary["skipped"]) == (generated, skipped)
    assert read_subject(out / "subject_0000").expressions.shape == (1, EXPRESSION_DIM)
    bad = CliRunner().invoke(app, ["-o", str(out), "--subjects", "0"])
    assert bad.exit_code != 0


def test_turned_lighting_swings_the_key_with_the_camera_up_to_a_neck_turn():
    from avat3r_cli.data.synthetic.appearance import MAX_HEAD_TURN, turned_lighting

    front = Lighting(key=(0.0, 0.0, -1.0), key_colour=(0.6, 0.6, 0.6), ambient=(0.4, 0.4, 0.4), kelvin=5000.0, sheen=0.1)
    assert np.allclose(turned_lighting(front, 0.0).key, front.key)
    # Positive yaw puts the camera on the subject's right (-x): a light behind the camera goes there too.
    right = turned_lighting(front, 30.0)
    assert np.allclose(right.key, (-0.5, 0.0, -np.sqrt(0.75)))
    assert (right.key_colour, right.ambient, right.kelvin, right.sheen) == (front.key_colour, front.ambient, 5000.0, 0.1)
    assert np.allclose(turned_lighting(front, 170.0).key, turned_lighting(front, MAX_HEAD_TURN).key)
    assert np.allclose(turned_lighting(front, -170.0).key, turned_lighting(front, -MAX_HEAD_TURN).key)
    # Only people who turn their head see the light turn; the others keep the head's light.
    still = dataclasses.replace(DEFAULT_IDENTITY, lighting=front)
    assert still.lighting_at(40.0) is front
    assert np.allclose(dataclasses.replace(still, turns_head=True).lighting_at(40.0).key, turned_lighting(front, 40.0).key)


def test_about_half_of_the_people_turn_their_head():
    rng = np.random.default_rng(3)
    turns = [sample_identity(rng).turns_head for _ in range(200)]
    assert 70 < sum(turns) < 130
