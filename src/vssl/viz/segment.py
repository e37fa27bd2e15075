"""Unsupervised video object segmentation from a video model's tokens, scored in the DAVIS-2017
convention (``vssl viz segment``).

Every clip of ``frames`` frames is embedded once; each token is then assigned to a segment:

- ``prototypes`` (SIGMA checkpoints, which carry ``prototypes`` and the decoder): SIGMA's own
  assignment. The spatial positions are split into 4 interleaved groups (2 x 2 lattice); each group in
  turn is masked as a tube (all time slots) and predicted by the decoder from the others, exactly as in
  pretraining, and the prediction's cosine scores against the L2-normalised prototypes give the segment
  (argmax). Only the ``clusters`` (default 20, DAVIS' limit on proposals) prototypes used most in the
  video compete, so every token goes to one of them.
- ``kmeans`` (any backbone: ViT tokens, CNN feature maps): the video's tokens, centred on the mean of
  their time slot and L2-normalised, are clustered by cosine k-means into ``clusters`` segments (default: the number of
  annotated objects + 1 for the background, the "clustering" setting of the TimeTuning protocol that
  SIGMA's paper uses, sigma-videomae.md §5.5).

Token scores (cosine to the prototype or centroid) are bilinearly upsampled from the token grid to the
frame size, frame by frame (a tubelet's frames share its scores), and the argmax is the segment map.
Segments are matched to annotated objects by the Hungarian algorithm on the mean of J and F
(``vssl.viz.davis.evaluate_unsupervised``). Outputs: ``segment.json`` (overall and per-video J, F,
J&F, recall, decay, settings), ``segments.png`` (frames, annotation, prediction) and ``masks/`` (the
predicted segments in the DAVIS results layout, readable by ``vssl.viz.davis.evaluate_folder``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssl.errors import CheckpointError, VsslError
from vssl.data import davis as layout
from vssl.viz import davis as D


@dataclass
class SegmentSettings:
    assign: str = "auto"      # auto (prototypes when the checkpoint has them, else kmeans) | prototypes | kmeans
    clusters: int = 0         # 0: kmeans -> objects + 1, prototypes -> 20
    frames: int = 16          # frames per clip (SIGMA's DAVIS protocol: 16)
    size: int = 0             # short side fed to the model; 0: the frames' own, at most 224
    max_videos: int = 0       # 0 = all
    kmeans_iters: int = 30
    seed: int = 0


# --- model and prototypes -----------------------------------------------------------------------

class PrototypeHead(nn.Module):
    """SIGMA's decoder and prototypes, rebuilt from a training checkpoint's method state."""

    def __init__(self, state: dict, num_heads: int):
        super().__init__()
        from vssl.methods.videomae import Decoder

        dim_dec, dim = state["encoder_to_decoder.weight"].shape
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("decoder.blocks."))
        protos = state["prototypes"]
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.encoder_to_decoder = nn.Linear(dim, dim_dec, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim_dec))
        self.decoder = Decoder(dim_dec, depth, num_heads, protos.shape[1])
        self.prototypes = nn.Parameter(torch.zeros_like(protos))
        keys = [k for k in self.state_dict()]
        self.load_state_dict({k: state[k] for k in keys})

    @torch.no_grad()
    def forward(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Normalised clip (1, C, T, H, W) -> cosine scores (t, h, w, K) of every token, each token
        predicted while masked (tube masking of one of 4 interleaved spatial groups at a time)."""
        from vssl.models.vit import sinusoid_table

        t, h, w = backbone.grid(x.shape)
        n = t * h * w
        pos = sinusoid_table(n, self.mask_token.shape[-1]).to(x.device, x.dtype)
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        group = ((ii % 2) * 2 + (jj % 2)).flatten().repeat(t).to(x.device)   # token order (t, h, w)
        protos = F.normalize(self.prototypes.float(), dim=1)
        scores = torch.empty(n, protos.shape[0], device=x.device)
        for g in group.unique():
            masked = (group == g).nonzero().squeeze(1)
            visible = (group != g).nonzero().squeeze(1)
            if len(visible) == 0:
                raise VsslError("prototype assignment needs a token grid of at least 2 x 2; raise --size")
            tok = self.encoder_to_decoder(self.encoder_norm(backbone.forward_tokens(x, visible[None])))
            x_dec = torch.cat([tok + pos[visible][None], self.mask_token + pos[masked][None]], dim=1)
            pred = self.decoder(x_dec, len(masked))[0]
            scores[masked] = F.normalize(pred.float(), dim=1) @ protos.t()
        return scores.view(t, h, w, -1)


def load_model(checkpoint: str | None, backbone: str | None, device: str = "cpu"
               ) -> tuple[nn.Module, PrototypeHead | None, dict]:
    """The backbone (and SIGMA's prototype head when the checkpoint has one) in eval mode.

    ``checkpoint``: a run directory, a training checkpoint (``final.pt``, ``checkpoints/*.pt``: method
    state + config) or a backbone file; None = random init of ``backbone``. The backbone name comes from
    ``backbone`` or else from the checkpoint's config."""
    from vssl.models import build_backbone
    from vssl.serialization import load_checkpoint

    info: dict = {"checkpoint": checkpoint}
    obj: dict = {}
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir():
            found = [path / c for c in ("final.pt", "checkpoints/last.pt", "backbone.pt") if (path / c).is_file()]
            if not found:
                raise CheckpointError(f"{path}: no final.pt, checkpoints/last.pt or backbone.pt in this folder")
            path = found[0]
        info["checkpoint"] = str(path)
        obj = load_checkpoint(path)
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    name = backbone or (config.get("model") or {}).get("backbone")
    if not name:
        raise VsslError("viz segment: give --backbone (the checkpoint does not name its backbone)")
    kwargs = dict((config.get("model") or {}).get("kwargs") or {})
    model = build_backbone(name, info["checkpoint"] if checkpoint else None, **kwargs)
    info["backbone"] = name
    head = None
    state = obj.get("model") if isinstance(obj.get("model"), dict) else None
    if state and "prototypes" in state:
        heads = (config.get("method") or {}).get("decoder_heads")
        if not heads:
            raise CheckpointError(f"{info['checkpoint']}: has prototypes but no config with method.decoder_heads")
        head = PrototypeHead(state, int(heads))
        info["prototypes"] = int(state["prototypes"].shape[0])
    return model.to(device).eval(), (head.to(device).eval() if head is not None else None), info


# --- tokens and clustering ----------------------------------------------------------------------

def _stride(model: nn.Module) -> int:
    return int(getattr(model, "patch_size", 32))


def input_size(shape: tuple[int, int], model: nn.Module, size: int = 0) -> tuple[int, int]:
    """Model input (h, w): short side ``size`` (0 = the frame's, at most 224, at least 4 tokens), the
    aspect ratio kept, both sides multiples of the patch size (or the CNN's stride of 32)."""
    p = _stride(model)
    H, W = shape
    short = size or min(min(H, W), 224)
    short = max(4 * p, short // p * p)
    scale = short / min(H, W)
    return (max(p, round(H * scale / p) * p), max(p, round(W * scale / p) * p))


@torch.no_grad()
def token_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Normalised clip (1, C, T, H, W) -> token features (t, h, w, D): a ViT's last-block tokens or a
    CNN's last feature map."""
    if hasattr(model, "forward_tokens"):
        t, h, w = model.grid(x.shape)
        return model.forward_tokens(x)[0].reshape(t, h, w, -1)
    if hasattr(model, "forward_features"):
        return model.forward_features(x)[0].permute(1, 2, 3, 0)
    raise VsslError(f"{type(model).__name__}: no forward_tokens or forward_features to read tokens from")


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Cosine k-means of L2-normalised rows ``x`` (N, D) with k-means++ seeding; returns centroids (k, D).

    Deterministic for a seed; an emptied cluster is re-seeded at the worst-served point."""
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    cent = [x[torch.randint(n, (1,), generator=g).item()]]
    for _ in range(1, k):
        d = (1 - x @ torch.stack(cent).t()).clamp_min(0).min(1).values
        probs = d / d.sum() if d.sum() > 0 else torch.full((n,), 1.0 / n)
        cent.append(x[torch.multinomial(probs.cpu(), 1, generator=g).item()])
    c = torch.stack(cent)
    for _ in range(iters):
        sim = x @ c.t()
        lab = sim.argmax(1)
        new = torch.zeros_like(c).index_add_(0, lab, x)
        counts = torch.bincount(lab, minlength=k)
        for j in (counts == 0).nonzero().flatten().tolist():
            worst = sim.max(1).values.argmin()
            new[j] = x[worst]
            counts[j] = 1
        new = F.normalize(new, dim=1)
        if torch.allclose(new, c):
            break
        c = new
    return c


def _clips(frames: np.ndarray, length: int) -> list[tuple[int, np.ndarray]]:
    """Consecutive clips of ``length`` frames; the last one is padded by repeating the last frame."""
    out = []
    for s in range(0, len(frames), length):
        clip = frames[s:s + length]
        if len(clip) < length:
            clip = np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), 0)])
        out.append((s, clip))
    return out


def _to_input(clip: np.ndarray, size: tuple[int, int], device) -> torch.Tensor:
    from vssl.data.transforms import normalize

    x = torch.from_numpy(clip).to(device).permute(3, 0, 1, 2).float() / 255     # (C, T, H, W)
    x = F.interpolate(x.transpose(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True)
    return normalize(x.transpose(0, 1)[None])


def segment_video(frames: np.ndarray, model: nn.Module, head: PrototypeHead | None = None, *,
                  clusters: int, settings: SegmentSettings | None = None, device="cpu") -> np.ndarray:
    """Segment one video: uint8 frames (T, H, W, 3) -> segment ids (T, H, W) uint8, 1..K.

    ``head`` given: SIGMA prototype assignment (the ``clusters`` most used prototypes); else cosine
    k-means of the tokens into ``clusters`` segments."""
    s = settings or SegmentSettings()
    T, H, W = frames.shape[:3]
    size = input_size((H, W), model, s.size)
    scores, spans = [], []
    for start, clip in _clips(frames, s.frames):
        x = _to_input(clip, size, device)
        out = head(model, x) if head is not None else token_features(model, x)   # (t, h, w, K or D)
        scores.append(out.float().cpu())
        spans.append(start)
    feats = torch.stack(scores)                                  # (n_clips, t, h, w, .)
    if head is not None:
        use = torch.bincount(feats.argmax(-1).flatten(), minlength=feats.shape[-1])
        keep = use.argsort(descending=True, stable=True)[:min(clusters, int((use > 0).sum()))]
        sim = feats[..., keep]
    else:
        # centred per time slot: what all tokens of a moment share (time position, global scene) is
        # not what separates an object from its background
        flat = (feats - feats.mean((2, 3), keepdim=True)).flatten(0, -2)
        flat = F.normalize(flat, dim=1)
        cent = kmeans(flat, clusters, s.kmeans_iters, s.seed)
        sim = (flat @ cent.t()).view(*feats.shape[:-1], -1)
    ids = np.zeros((T, H, W), np.uint8)
    t_slots = sim.shape[1]
    for c, start in enumerate(spans):
        for slot in range(t_slots):
            lo = start + slot * s.frames // t_slots
            hi = min(start + (slot + 1) * s.frames // t_slots, T)
            if lo >= hi:
                continue
            up = F.interpolate(sim[c, slot].permute(2, 0, 1)[None], size=(H, W), mode="bilinear",
                               align_corners=False)
            ids[lo:hi] = (up[0].argmax(0) + 1).numpy().astype(np.uint8)
    return ids


# --- the DAVIS run ------------------------------------------------------------------------------

def segment_davis(davis_root: str | Path, out: str | Path, checkpoint: str | None = None,
                  backbone: str | None = None, settings: SegmentSettings | None = None,
                  device: str = "cpu", resolution: str = "480p") -> dict:
    """Segment every DAVIS video under ``davis_root``, evaluate, write ``out/segment.json``,
    ``out/segments.png`` and ``out/masks/<video>/*.png``; returns the JSON's content."""
    s = settings or SegmentSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if s.frames < 2 or s.frames % 2:
        raise VsslError(f"--frames: expected an even number >= 2, got {s.frames}")
    torch.manual_seed(s.seed)   # random init is the same network every run
    model, head, info = load_model(checkpoint, backbone, device)
    assign = s.assign if s.assign != "auto" else ("prototypes" if head is not None else "kmeans")
    if assign == "prototypes" and head is None:
        raise VsslError("--assign prototypes: the checkpoint has no SIGMA prototypes (pass a SIGMA run's "
                        "final.pt or checkpoints/last.pt), use --assign kmeans")
    videos = layout.list_sequences(davis_root, resolution)
    if s.max_videos:
        videos = videos[:s.max_videos]
    if not videos:
        raise VsslError(f"{davis_root}: no videos with annotations in JPEGImages/{resolution}")
    t0 = time.perf_counter()
    results, shown, skipped = {}, [], []
    for v in videos:
        try:
            frames, gt = layout.read_sequence(davis_root, v, resolution)
        except (VsslError, OSError, ValueError) as e:  # a damaged sequence: say which and go on
            skipped.append({"video": v, "reason": str(e).replace("\n", " ")})
            print(f"vssl: skipping DAVIS video {v}: {skipped[-1]['reason']}", file=sys.stderr)
            continue
        k = s.clusters or (D.MAX_PROPOSALS if assign == "prototypes" else int(gt.max()) + 1)
        k = min(k, D.MAX_PROPOSALS)
        pred = segment_video(frames, model, head if assign == "prototypes" else None, clusters=k, settings=s,
                             device=device)
        results[v] = D.evaluate_unsupervised(gt, pred)
        for t in range(len(pred)):
            layout.write_annotation(out / "masks" / v / f"{t:05d}.png", pred[t])
        if len(shown) < 4:
            shown.append((v, frames, gt, pred, results[v]["match"]))
    if not results:
        raise VsslError(f"{davis_root}: none of the {len(videos)} DAVIS videos could be read "
                        f"(first: {skipped[0]['video']}: {skipped[0]['reason']})")
    summary = D.summarize(results)
    summary["skipped"] = skipped
    summary["settings"] = {**asdict(s), "assign": assign, "device": str(device), "resolution": resolution,
                           "seconds": round(time.perf_counter() - t0, 2)}
    summary["model"] = info
    summary["davis"] = str(davis_root)
    (out / "segment.json").write_text(json.dumps(summary, indent=1))
    save_sheet(shown, out / "segments.png")
    return summary


TILE = 96     # height of one frame in the sheet
LABEL_W = 48  # row-label column


def sheet_size(num_videos: int, frame_hw: tuple[int, int], columns: int = 4) -> tuple[int, int]:
    """(width, height) of ``segments.png`` for ``num_videos`` videos of frames ``frame_hw``."""
    tile_w = max(1, round(frame_hw[1] * TILE / frame_hw[0]))
    return LABEL_W + columns * tile_w, num_videos * 3 * TILE


def save_sheet(shown: list, path: Path, columns: int = 4) -> Path:
    """Rows of (frames, annotation, prediction) for each shown video at ``columns`` evenly spaced frames.

    Annotated objects get the DAVIS palette; a predicted segment gets the colour of the object it was
    matched to, unmatched segments are grey."""
    from PIL import Image, ImageDraw

    pal = np.array(layout.palette(), np.uint8).reshape(-1, 3)
    H, W = shown[0][1].shape[1:3]
    width, height = sheet_size(len(shown), (H, W), columns)
    tile_w = (width - LABEL_W) // columns
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (name, frames, gt, pred, match) in enumerate(shown):
        lut = np.full((256, 3), 110, np.uint8)
        lut[0] = 0
        for obj, seg in match.items():
            if seg is not None:
                lut[seg] = pal[obj]
        picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        for c, t in enumerate(picks):
            rows = (frames[t], _blend(frames[t], pal[gt[t]], gt[t] > 0), _blend(frames[t], lut[pred[t]], pred[t] > 0))
            for k, img in enumerate(rows):
                tile = Image.fromarray(img).resize((tile_w, TILE), Image.NEAREST)
                sheet.paste(tile, (LABEL_W + c * tile_w, (3 * r + k) * TILE))
        for k, label in enumerate((name[:7], "truth", "pred")):
            draw.text((3, (3 * r + k) * TILE + TILE // 2 - 5), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _blend(frame: np.ndarray, colour: np.ndarray, where: np.ndarray) -> np.ndarray:
    out = frame.astype(np.float32) * 0.35
    out[where] += colour[where].astype(np.float32) * 0.65
    out[~where] = frame[~where] * 0.6
    return out.clip(0, 255).astype(np.uint8)


__all__ = ["SegmentSettings", "PrototypeHead", "load_model", "input_size", "token_features", "kmeans",
           "segment_video", "segment_davis", "sheet_size", "save_sheet"]
