"""The PyTorch rasteriser against a dense float64 brute-force reference and gsplat's helpers."""

from __future__ import annotations

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from reference_rasterizer import dense_render

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.render import composite, render
from avat3r_cli.render.projection import project_gaussians
from avat3r_cli.render.sh import sh_basis

H, W = 48, 64
BACKGROUND = torch.tensor([0.2, 0.3, 0.4])
UP = torch.tensor([0.0, -1.0, 0.0])
# Far, oblique, and close enough that some Gaussians lie behind the camera and many off-screen.
EYES = [(0.0, 0.0, -2.0), (1.5, -0.5, -1.0), (0.2, 0.1, -0.5)]


def make_scene(n: int = 400, sh_degree: int = 1, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen) * 0.4
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    scales = torch.exp(torch.randn(n, 3, generator=gen) * 0.5) * 0.05
    opacities = torch.rand(n, generator=gen) * 0.99 + 0.005
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=gen) * 0.5
    return Gaussians(means, quats, scales, opacities, sh)


def camera_at(eye) -> Camera:
    return Camera(intrinsics_from_fov(50.0, H, W), look_at(torch.tensor(eye), torch.zeros(3), UP), H, W)


def reference(g: Gaussians, cam: Camera, background=BACKGROUND):
    args = [t.double() for t in (g.means, g.quats, g.scales, g.opacities, g.sh, cam.K, cam.world_to_cam)]
    return dense_render(*args, H, W, background.double())


@pytest.mark.parametrize("eye", EYES)
def test_forward_matches_dense_reference(eye):
    g, cam = make_scene(), camera_at(eye)
    out = render(g, cam, background=BACKGROUND)
    image, alpha, depth = reference(g, cam)
    assert out.image.shape == (3, H, W) and out.alpha.shape == (1, H, W) and out.depth.shape == (1, H, W)
    assert 0.1 < float(alpha.mean()) < 0.999  # the scene really covers part of the image
    assert (out.image.double() - image).abs().max() <= 1e-4
    assert (out.alpha.double() - alpha).abs().max() <= 1e-4
    assert ((out.depth.double() - depth).abs() * alpha).max() <= 1e-4 * float(depth.max())


def test_scene_has_gaussians_behind_camera_and_off_screen():
    g, cam = make_scene(), camera_at(EYES[2])
    proj = project_gaussians(g.means, g.quats, g.scales, g.opacities, cam.K, cam.world_to_cam, H, W)
    assert int((proj.depths <= 0).sum()) > 10
    off = (proj.means2d[:, 0] < 0) | (proj.means2d[:, 0] > W) | (proj.means2d[:, 1] < 0) | (proj.means2d[:, 1] > H)
    assert int((off & (proj.depths > 0)).sum()) > 10


@pytest.mark.parametrize("eye", EYES)
def test_gradients_match_reference_autograd(eye):
    g, cam = make_scene(seed=1), camera_at(eye)
    gen = torch.Generator().manual_seed(2)
    w_img, w_alpha, w_depth = (torch.randn(c, H, W, generator=gen) for c in (3, 1, 1))

    def loss(image, alpha, depth):
        return (image * w_img).sum() + (alpha * w_alpha).sum() + (depth * alpha * w_depth).sum()

    params = [t.clone().requires_grad_() for t in (g.means, g.quats, g.scales, g.opacities, g.sh)]
    out = render(Gaussians(*params), cam, background=BACKGROUND)
    loss(out.image, out.alpha, out.depth).backward()

    ref_params = [t.double().clone().requires_grad_() for t in (g.means, g.quats, g.scales, g.opacities, g.sh)]
    image, alpha, depth = dense_render(
        *ref_params, cam.K.double(), cam.world_to_cam.double(), H, W, BACKGROUND.double()
    )
    loss(image, alpha, depth).backward()
    for name, p, r in zip(["means", "quats", "scales", "opacities", "colours (sh)"], params, ref_params):
        scale = float(r.grad.abs().max())
        assert scale > 0, name
        err = float((p.grad.double() - r.grad).abs().max())
        assert err <= 1e-4 * scale, f"{name}: max error {err:.3g} against gradient scale {scale:.3g}"


def test_single_gaussian_lands_on_its_projected_pixel():
    cam = Camera(intrinsics_from_fov(40.0, H, W), look_at(torch.tensor([0.3, -0.2, -1.5]), torch.zeros(3), UP), H, W)
    point = torch.tensor([0.05, 0.03, 0.1])
    g = Gaussians.from_colors(
        point[None], torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.002), torch.tensor([0.9]),
        torch.tensor([[1.0, 0.0, 0.0]]),
    )
    out = render(g, cam, background=(0.0, 0.0, 0.0))
    p_cam = cam.world_to_cam[:3, :3] @ point + cam.world_to_cam[:3, 3]
    u, v = (cam.K @ p_cam / p_cam[2])[:2]
    row, col = divmod(int(out.alpha[0].argmax()), W)
    assert (col, row) == (int(u), int(v))  # pixel (col, row) spans [col, col + 1)
    assert 0.2 < float(out.alpha.max()) <= 0.9 + 1e-6  # eps2d blurs a sub-pixel Gaussian
    assert float(out.image[0].max()) > 0.5 and float(out.image[1:].max()) < 1e-6


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_basis_matches_gsplat(degree):
    gen = torch.Generator().manual_seed(degree)
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, generator=gen), dim=-1)
    coeffs = torch.randn(50, (degree + 1) ** 2, 3, generator=gen)
    ours = (sh_basis(degree, dirs)[..., None] * coeffs).sum(1)
    torch.testing.assert_close(ours, _spherical_harmonics(degree, dirs, coeffs), atol=1e-5, rtol=1e-5)


def test_projection_matches_gsplat_reference():
    g, cam = make_scene(), camera_at(EYES[1])
    proj = project_gaussians(g.means, g.quats, g.scales, g.opacities, cam.K, cam.world_to_cam, H, W)
    covars, _ = _quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False, triu=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(g.means, covars, cam.world_to_cam[None], cam.K[None], W, H)
    ok = proj.depths > 0.01
    torch.testing.assert_close(proj.means2d[ok], means2d[0][ok], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(proj.conics[ok], conics[0][ok], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(proj.depths, depths[0])
    # Our boxes are opacity-aware (as gsplat's CUDA kernel), so tighter than the reference's.
    gsplat_visible = (radii[0] > 0).all(-1)
    assert bool((proj.visible <= gsplat_visible).all())
    assert int(proj.visible.sum()) > 0.9 * int(gsplat_visible.sum())


def test_chunked_compaction_paths_give_the_same_image(monkeypatch):
    g, cam = make_scene(n=300, seed=3), camera_at(EYES[0])
    params = [t.clone().requires_grad_() for t in (g.means, g.opacities)]
    out = render(Gaussians(params[0], g.quats, g.scales, params[1], g.sh), cam)
    out.image.sum().backward()
    grads = [p.grad.clone() for p in params]
    monkeypatch.setattr(composite, "TILES_PER_CHUNK", 7)
    params2 = [t.clone().requires_grad_() for t in (g.means, g.opacities)]
    out2 = render(Gaussians(params2[0], g.quats, g.scales, params2[1], g.sh), cam)
    out2.image.sum().backward()
    torch.testing.assert_close(out2.image, out.image, atol=1e-6, rtol=0)
    for a, b in zip(grads, [p.grad for p in params2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_nothing_visible_gives_background_and_zero_gradients():
    g = make_scene(n=20)
    means = (g.means + torch.tensor([0.0, 0.0, 10.0])).requires_grad_()  # all behind the camera
    cam = Camera(intrinsics_from_fov(50.0, H, W), torch.eye(4), H, W)
    out = render(Gaussians(means, g.quats, g.scales, g.opacities, g.sh), camera_at((0.0, 0.0, 5.0)))
    assert torch.allclose(out.image, BACKGROUND.new_tensor([1.0, 1.0, 1.0])[:, None, None].expand(3, H, W))
    assert float(out.alpha.detach().abs().max()) == 0.0
    out.image.sum().backward()
    assert float(means.grad.abs().max()) == 0.0
    del cam


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_parity_with_gsplat():
    """gsplat's CUDA rasteriser and ours agree on images and gradients (flips at 1/255 aside)."""
    g = make_scene(n=2000, sh_degree=3, seed=4).to("cuda")
    for eye in EYES:
        cam = camera_at(eye)
        results = []
        for backend in ("gsplat", "torch"):
            params = [t.clone().requires_grad_() for t in (g.means, g.quats, g.scales, g.opacities, g.sh)]
            out = render(Gaussians(*params), cam, background=BACKGROUND, backend=backend)
            (out.image.sum() + out.alpha.sum()).backward()
            results.append((out, [p.grad for p in params]))
        (a, ga), (b, gb) = results
        assert (a.image - b.image).abs().mean() < 1e-5
        assert (a.image - b.image).abs().max() < 5e-3  # a pair flipping at alpha = 1/255
        assert (a.alpha - b.alpha).abs().max() < 5e-3
        for x, y in zip(ga, gb):
            assert (x - y).abs().max() <= 2e-2 * y.abs().max()
