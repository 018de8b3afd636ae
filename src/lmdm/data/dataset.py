"""Datasets: audio manifests, pre-encoded latents, and the training Dataset of random latent crops.

Audio manifest (`manifest.jsonl`, one JSON object per clip, paths relative to the manifest):
    {"path": "audio/x.flac", "duration": 30.0, "sample_rate": 44100, "channels": 2,
     "captions": ["...", ...], "metadata": {...}, "stems": {"drums": "stems/x/drums.flac", ...}}
`stems` is optional. `build_manifest` writes one for any folder of audio; the synthetic corpus
writes its own.

Latent folder (`encode_dataset`): `latents.json` (sample rate, downsampling ratio, latent dim,
frame rate, control names), `latents.jsonl` (one line per clip: source path, shard, frames,
captions, metadata, stem and control keys) and `shard-00000.safetensors`, ... holding per clip
`<id>/mix` (latent_dim, frames) float32, optionally `<id>/stem/<name>` and `<id>/controls`
(4, frames) (see `controls.py`), and for accompaniment training (`accompaniment_every`) one
given stem `<id>/acc/given` with its complement `<id>/acc/rest` (the latents of mix − given
stem), recorded as `"accompaniment": {"given": name, "given_latents": key, "rest_latents": key}`.

Policies: unreadable audio while indexing a folder is reported by path and skipped (the count is
returned); a manifest that names missing files, non-finite latents and (with short="error")
clips shorter than the crop are DataErrors naming the clips. By default short clips are skipped
and counted (`LatentDataset.skipped`), with a warning.
"""
from __future__ import annotations

import json
import math
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio.io import load_audio
from ..errors import DataError
from .augment import augment_dynamics
from ..audio.controls import NAMES as CONTROL_NAMES, controls_array, extract_controls

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus")
REQUIRED = {"path": str, "duration": (int, float), "sample_rate": int, "channels": int, "captions": list,
            "metadata": dict}


# -- audio manifests ------------------------------------------------------------------------

def read_manifest(path: str | Path, check_files: bool = True) -> list[dict]:
    """Parse and validate a manifest; every referenced file (audio and stems) must exist."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON: {e}") from e
        for key, kind in REQUIRED.items():
            if not isinstance(entry.get(key), kind):
                raise DataError(f"{path}:{n}: field {key!r} is missing or not {getattr(kind, '__name__', kind)}")
        if not isinstance(entry.get("stems", {}), dict):
            raise DataError(f"{path}:{n}: field 'stems' must map stem names to paths")
        entries.append(entry)
    if check_files:
        missing = [p for e in entries for p in [e["path"], *e.get("stems", {}).values()]
                   if not (path.parent / p).is_file()]
        if missing:
            shown = ", ".join(missing[:10]) + (f" … and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DataError(f"{path} references {len(missing)} missing file(s) (relative to {path.parent}): {shown}")
    return entries


def write_manifest(entries: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    os.replace(tmp, path)
    return path


def _verify(path: Path) -> tuple[int, int, float]:
    """Decode the whole file (catches truncation and garbage a header check misses) -> (sr, ch, seconds)."""
    import soundfile as sf
    with sf.SoundFile(str(path)) as f:
        sr, ch, frames = f.samplerate, f.channels, 0
        for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise ValueError("contains NaN or infinite samples")
            frames += len(block)
    if frames == 0:
        raise ValueError("contains no audio")
    return sr, ch, frames / sr


def _sidecar(audio: Path) -> tuple[list[str], dict]:
    txt, js = audio.with_suffix(".txt"), audio.with_suffix(".json")
    if js.is_file():
        try:
            data = json.loads(js.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"caption sidecar {js} is not valid JSON: {e}") from e
        if isinstance(data, list):
            return [str(c) for c in data], {}
        if isinstance(data, dict):
            caps = data.get("captions", data.get("caption", data.get("text", [])))
            caps = [caps] if isinstance(caps, str) else [str(c) for c in caps]
            return caps, data.get("metadata", {}) if isinstance(data.get("metadata"), dict) else {}
        raise DataError(f"caption sidecar {js} must hold a list of captions or an object with 'captions'")
    if txt.is_file():
        return [line.strip() for line in txt.read_text(errors="replace").splitlines() if line.strip()], {}
    return [], {}


@dataclass
class ManifestReport:
    manifest: Path
    entries: list[dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)


def build_manifest(folder: str | Path, out: str | Path | None = None, progress: bool = False) -> ManifestReport:
    """Index every audio file under `folder` (recursively) into `out` (default folder/manifest.jsonl).
    Captions come from a same-stem .json (list, or {"captions": [...], "metadata": {...}}) or .txt
    (one caption per line); clips without one get an empty caption list. Files that cannot be
    decoded are skipped and listed in the report."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a directory")
    out = Path(out) if out else folder / "manifest.jsonl"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
    from tqdm import tqdm
    entries, skipped = [], []
    for path in tqdm(files, desc="lmdm data manifest", unit="file", disable=not progress):
        try:
            sr, ch, seconds = _verify(path)
        except Exception as e:   # any decoder failure means this file is unusable: report, go on
            skipped.append((str(path), f"{type(e).__name__}: {e}"))
            continue
        captions, metadata = _sidecar(path)
        entries.append({"path": os.path.relpath(path, out.parent), "duration": round(seconds, 6), "sample_rate": sr,
                        "channels": ch, "captions": captions, "metadata": metadata})
    if not entries:
        raise DataError(f"none of the {len(files)} audio files under {folder} could be read; first: {skipped[0]}")
    write_manifest(entries, out)
    return ManifestReport(out, entries, skipped)


# -- pre-encoding ---------------------------------------------------------------------------

def _channels(autoencoder) -> int | None:
    config = getattr(autoencoder, "config", None)
    return getattr(autoencoder, "audio_channels", None) or getattr(config, "audio_channels", None)


@torch.inference_mode()
def encode_audio(autoencoder, audio: np.ndarray, chunk_frames: int | None = None, overlap_frames: int = 32,
                 device=None) -> torch.Tensor:
    """(channels, samples) -> (latent_dim, ceil(samples / ratio)) float32 on the CPU. Long audio
    is encoded in chunks of `chunk_frames` latent frames with `overlap_frames` of context on each
    side that are encoded and thrown away: exact for an encoder whose receptive field fits in the
    overlap, a close approximation otherwise."""
    ratio = int(autoencoder.downsampling_ratio)
    frames = math.ceil(audio.shape[-1] / ratio)
    x = torch.from_numpy(np.pad(audio, ((0, 0), (0, frames * ratio - audio.shape[-1]))))
    device = device or getattr(autoencoder, "device", "cpu")
    if not chunk_frames or frames <= chunk_frames:
        return autoencoder.encode(x[None].to(device))[0].float().cpu()
    pieces = []
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        a, b = max(0, start - overlap_frames), min(frames, stop + overlap_frames)
        z = autoencoder.encode(x[None, :, a * ratio:b * ratio].to(device))[0].float().cpu()
        pieces.append(z[:, start - a:start - a + stop - start])
    return torch.cat(pieces, dim=1)


def encode_dataset(manifest_path: str | Path, autoencoder, out_dir: str | Path, stems: bool = True,
                   controls: bool = True, chunk_seconds: float | None = 60.0, overlap_frames: int = 32,
                   shard_mb: float = 512.0, progress: bool = True, accompaniment_every: int = 0,
                   augment_copies: int = 0, augment_seed: int = 0) -> Path:
    """Encode every clip of a manifest (and its stems) to latents in safetensors shards; compute
    sketch controls from the same audio at the latent frame rate. Returns the latent manifest path.

    `accompaniment_every` N > 0: of the clips that have stems, every Nth (the 0th, Nth, 2Nth, ...)
    also gets an accompaniment pair: one stem, rotating through the clip's sorted stem names with
    the pair's index, is the "given" part and the complement is encoded from the audio mix − stem
    (the manifest's stems must sum to the mix). Cheaper than `stems` (two encodes per chosen clip
    instead of one per stem).

    `augment_copies` N > 0: every clip also gets N copies under random gain and brightness curves
    (`augment.augment_dynamics`, seeded by (augment_seed, clip, copy)), each a clip of its own with
    `"augment"` (the curves) in its record, controls from the augmented audio, no stems or pairs."""
    if accompaniment_every < 0:
        raise DataError(f"accompaniment_every must be >= 0, got {accompaniment_every}")
    if augment_copies < 0:
        raise DataError(f"augment_copies must be >= 0, got {augment_copies}")
    if augment_copies and not controls:
        raise DataError("augment_copies needs controls: the augmented clips are there to teach the sketch")
    from safetensors.torch import save_file
    from tqdm import tqdm
    manifest_path = Path(manifest_path)
    entries = read_manifest(manifest_path)
    if not entries:
        raise DataError(f"manifest {manifest_path} lists no clips")
    root, out = manifest_path.parent, Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr, ratio = int(autoencoder.sample_rate), int(autoencoder.downsampling_ratio)
    chunk = int(chunk_seconds * sr / ratio) if chunk_seconds else None
    lines, shard, shard_bytes, shard_index, with_stems = [], {}, 0, 0, 0

    def flush():
        nonlocal shard, shard_bytes, shard_index
        if shard:
            save_file(shard, str(out / f"shard-{shard_index:05d}.safetensors"))
            shard, shard_bytes, shard_index = {}, 0, shard_index + 1

    def encode_array(audio: np.ndarray, what: str) -> torch.Tensor:
        z = encode_audio(autoencoder, audio, chunk, overlap_frames)
        if not torch.isfinite(z).all():
            raise DataError(f"{what}: the autoencoder produced non-finite latents")
        return z.contiguous()

    def encode(rel: str) -> tuple[torch.Tensor, np.ndarray]:
        audio = load_audio(root / rel, sr, _channels(autoencoder))
        return encode_array(audio, str(root / rel)), audio

    def add_controls(record: dict, tensors: dict, audio: np.ndarray, frames: int) -> None:
        c = controls_array(extract_controls(audio, sr, ratio))
        c = np.pad(c, ((0, 0), (0, max(0, frames - c.shape[1]))), mode="edge")[:, :frames]
        tensors[f"{record['id']}/controls"] = torch.from_numpy(np.ascontiguousarray(c))
        record["controls"] = f"{record['id']}/controls"

    def add(record: dict, tensors: dict) -> None:
        nonlocal shard_bytes
        record["shard"] = f"shard-{shard_index:05d}.safetensors"
        shard.update(tensors)
        shard_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        lines.append(record)
        if shard_bytes >= shard_mb * 2 ** 20:
            flush()

    for i, entry in enumerate(tqdm(entries, desc="lmdm data encode", unit="clip", disable=not progress)):
        cid = f"{i:06d}"
        z, audio = encode(entry["path"])
        latent_dim = z.shape[0]
        record = {"id": cid, "path": entry["path"], "latents": f"{cid}/mix", "frames": z.shape[1],
                  "duration": entry["duration"], "captions": entry["captions"], "metadata": entry["metadata"]}
        tensors = {record["latents"]: z}
        if controls:
            add_controls(record, tensors, audio, z.shape[1])
        if stems and entry.get("stems"):
            record["stems"] = {}
            for name, rel in entry["stems"].items():
                zs, _ = encode(rel)
                if zs.shape != z.shape:
                    raise DataError(f"stem {rel} encodes to {tuple(zs.shape)} but its mix {entry['path']} to "
                                    f"{tuple(z.shape)}: stems must have the mix's length")
                tensors[f"{cid}/stem/{name}"] = zs
                record["stems"][name] = f"{cid}/stem/{name}"
        if accompaniment_every and entry.get("stems"):
            if with_stems % accompaniment_every == 0:
                names = sorted(entry["stems"])
                given = names[(with_stems // accompaniment_every) % len(names)]
                rel = entry["stems"][given]
                stem = load_audio(root / rel, sr, _channels(autoencoder))
                if math.ceil(stem.shape[-1] / ratio) != z.shape[1]:
                    raise DataError(f"stem {rel} has {stem.shape[-1]} samples but its mix {entry['path']} has "
                                    f"{audio.shape[-1]}: stems must have the mix's length")
                # sub-frame length differences (resampling rounding) are padded / cut to the mix's length
                stem = np.pad(stem, ((0, 0), (0, max(0, audio.shape[-1] - stem.shape[-1]))))[:, : audio.shape[-1]]
                keys = {"given_latents": f"{cid}/acc/given", "rest_latents": f"{cid}/acc/rest"}
                tensors[keys["given_latents"]] = encode_array(stem, str(root / rel))
                tensors[keys["rest_latents"]] = encode_array(audio - stem, f"{root / entry['path']} minus stem {rel}")
                record["accompaniment"] = {"given": given, **keys}
            with_stems += 1
        add(record, tensors)
        for k in range(augment_copies):
            aug, curves = augment_dynamics(audio, sr, np.random.default_rng([augment_seed, i, k]))
            za = encode_array(aug, f"{root / entry['path']} (augmented copy {k})")
            copy = {"id": f"{cid}-aug{k}", "path": entry["path"], "latents": f"{cid}-aug{k}/mix",
                    "frames": za.shape[1], "duration": entry["duration"], "captions": entry["captions"],
                    "metadata": entry["metadata"], "augment": curves}
            copy_tensors = {copy["latents"]: za}
            add_controls(copy, copy_tensors, aug, za.shape[1])
            add(copy, copy_tensors)
    flush()
    info = {"sample_rate": sr, "downsampling_ratio": ratio, "frame_rate": sr / ratio, "latent_dim": latent_dim,
            "controls": list(CONTROL_NAMES) if controls else [], "source": str(manifest_path), "clips": len(lines)}
    (out / "latents.json").write_text(json.dumps(info, indent=1))
    return write_manifest(lines, out / "latents.jsonl")


# -- training dataset ------------------------------------------------------------------------

class LatentDataset(torch.utils.data.Dataset):
    """Random crops of `crop_frames` latent frames with one of the clip's captions (chosen at
    random; "" when it has none), and optionally the stems' latents and the controls over the same
    frames. The latents it serves (stems and controls only when asked for) are loaded into memory and
    checked to be finite when the dataset is built.

    `accompaniment`: items of clips with an accompaniment pair (`encode_dataset(accompaniment_every=)`)
    get `item["accompaniment"] = {"given": (D, T), "rest": (D, T)}` over the same frames; other items
    have no such key. Their `controls` stay those of the mix audio.

    `short`: what to do with clips shorter than the crop: "skip" (default; counted in
    `self.skipped` and warned about) or "error" (DataError naming them).
    `seed`: None draws from Python's `random` (which DataLoader seeds per worker); an int makes
    crop and caption a function of (seed, epoch, index) — call `set_epoch` each epoch."""

    def __init__(self, latent_dir: str | Path, crop_frames: int, stems: bool = False, controls: bool = False,
                 short: str = "skip", seed: int | None = None, accompaniment: bool = False):
        from safetensors import safe_open
        if short not in ("skip", "error"):
            raise DataError(f"short must be 'skip' or 'error', got {short!r}")
        if crop_frames <= 0:
            raise DataError(f"crop_frames must be positive, got {crop_frames}")
        self.folder, self.crop = Path(latent_dir), int(crop_frames)
        self.stems, self.controls, self.seed, self.epoch = stems, controls, seed, 0
        self.accompaniment = accompaniment
        records = _read_latent_manifest(self.folder)
        short_ones = [r for r in records if r["frames"] < self.crop]
        if short_ones and short == "error":
            names = ", ".join(r["path"] for r in short_ones[:10])
            raise DataError(f"{len(short_ones)} clip(s) shorter than the crop of {self.crop} frames: {names}")
        self.skipped = [r["path"] for r in short_ones]
        self.records = [r for r in records if r["frames"] >= self.crop]
        if self.skipped:
            warnings.warn(f"{len(self.skipped)} of {len(records)} clips are shorter than the crop of {self.crop} "
                          f"frames and were skipped", stacklevel=2)
        if not self.records:
            raise DataError(f"no clip in {self.folder} is at least {self.crop} frames long")
        if accompaniment and not any("accompaniment" in r for r in self.records):
            raise DataError(f"no clip in {self.folder} has an accompaniment pair; re-encode with "
                            f"`lmdm data encode --accompaniment-every N` (and a manifest with stems)")
        self.tensors: dict[str, torch.Tensor] = {}
        by_shard: dict[str, list[dict]] = {}
        for r in self.records:
            by_shard.setdefault(r["shard"], []).append(r)
        for shard, records in sorted(by_shard.items()):
            path = self.folder / shard
            if not path.is_file():
                raise DataError(f"latent shard {path} is missing")
            with safe_open(str(path), framework="pt") as f:   # only the tensors this dataset serves
                present = set(f.keys())
                for r in records:
                    for key in self._keys(r):
                        if key not in present:
                            raise DataError(f"{shard} has no tensor {key!r} (clip {r['path']})")
                        t = self.tensors[key] = f.get_tensor(key)
                        if not torch.isfinite(t).all():
                            raise DataError(f"non-finite latents for clip {r['path']} (tensor {key!r} in {shard})")

    def _keys(self, r: dict) -> list[str]:
        keys = [r["latents"]]
        if self.controls:
            if "controls" not in r:
                raise DataError(f"clip {r['path']} has no controls; re-encode with controls=True")
            keys.append(r["controls"])
        if self.stems:
            keys += list(r.get("stems", {}).values())
        if self.accompaniment and "accompaniment" in r:
            keys += [r["accompaniment"]["given_latents"], r["accompaniment"]["rest_latents"]]
        return keys

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}") if self.seed is not None else random
        start = rng.randrange(r["frames"] - self.crop + 1)
        window = slice(start, start + self.crop)
        item = {"latents": self.tensors[r["latents"]][:, window], "caption": rng.choice(r["captions"] or [""]),
                "path": r["path"], "start": start, "augmented": "augment" in r}
        if self.controls:
            item["controls"] = self.tensors[r["controls"]][:, window]
        if self.stems:
            item["stems"] = {name: self.tensors[key][:, window] for name, key in r.get("stems", {}).items()}
        if self.accompaniment and "accompaniment" in r:
            acc = r["accompaniment"]
            item["accompaniment"] = {"given": self.tensors[acc["given_latents"]][:, window],
                                     "rest": self.tensors[acc["rest_latents"]][:, window]}
        return item


def _read_latent_manifest(folder: Path) -> list[dict]:
    path = folder / "latents.jsonl"
    if not path.is_file():
        raise DataError(f"{folder} has no latents.jsonl; create it with `lmdm data encode`")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON: {e}") from e
    return records


def collate_latents(batch: list[dict]) -> dict:
    """Stack crops. Stems differ between clips, so `stems[name]` is (B, D, T) with zeros where a
    clip lacks the stem and `stem_mask[name]` (B,) says which rows are real."""
    out = {"latents": torch.stack([b["latents"] for b in batch]), "captions": [b["caption"] for b in batch],
           "paths": [b["path"] for b in batch], "start": torch.tensor([b["start"] for b in batch])}
    if "controls" in batch[0]:
        out["controls"] = torch.stack([b["controls"] for b in batch])
    if "stems" in batch[0]:
        names = sorted({n for b in batch for n in b["stems"]})
        zeros = torch.zeros_like(batch[0]["latents"])
        out["stems"] = {n: torch.stack([b["stems"].get(n, zeros) for b in batch]) for n in names}
        out["stem_mask"] = {n: torch.tensor([n in b["stems"] for b in batch]) for n in names}
    return out
