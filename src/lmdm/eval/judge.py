"""`lmdm judge`: what listener models nobody on the project trained hear in a piece of audio.

- tags: musicnn's MagnaTagATune and Million Song Dataset taggers, ported to torch (`lmdm.eval.musicnn`);
- notes: basic-pitch's bundled ONNX transcriber (`lmdm.eval.transcribe`), with the key and
  pitch-class profile of the transcribed notes;
- key and pitch-class profile from chroma (librosa's CQT chroma, Albrecht-Shanahan key profiles);
- tempo and beats from librosa's beat tracker;
- timbre: spectral centroid, 95 % roll-off (librosa), EBU R128 integrated loudness (pyloudnorm).
With a prompt: agreement of the tags with the prompt's words (`WORD_TAGS`, documented in
docs/judge.md), tempo error against the BPM it names, key agreement with the key it names.

The packages come with the `judge` extra (scripts/setup.sh installs it); a missing one is named in a
`JudgeUnavailable` error, or, in `judge_file`, in that section's "unavailable" entry.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .transcribe import JudgeUnavailable, need, note_pcp, transcribe

ANALYSIS_SR = 22050
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
# Albrecht & Shanahan (2013) key profiles, from a corpus of pieces: on 24 unseen corpus-v2 renders
# (one per style) they read the stated key on 21 where Krumhansl-Kessler's read it on 16.
MAJOR = np.array([.238, .006, .111, .006, .137, .094, .016, .214, .009, .080, .008, .081])
MINOR = np.array([.220, .006, .104, .123, .019, .103, .012, .214, .062, .022, .061, .052])

# prompt word -> tags of musicnn's MTT ("mtt:") and MSD ("msd:") vocabularies that stand for it.
# A word agrees when one of its tags is among its tagger's 5 most probable (docs/judge.md).
WORD_TAGS: dict[str, list[str]] = {
    "rock": ["mtt:rock", "msd:rock", "msd:classic rock", "msd:hard rock", "msd:alternative rock"],
    "metal": ["mtt:metal", "msd:metal", "msd:heavy metal", "msd:hard rock"],
    "punk": ["msd:punk"], "indie": ["msd:indie", "msd:indie rock", "msd:indie pop"],
    "pop": ["mtt:pop", "msd:pop", "msd:indie pop", "msd:catchy"], "k-pop": ["mtt:pop", "msd:pop", "msd:dance"],
    "jazz": ["msd:jazz"], "blues": ["msd:blues"], "soul": ["msd:soul", "msd:rnb"], "funk": ["msd:funk"],
    "r&b": ["msd:rnb", "msd:soul"], "hip hop": ["msd:Hip-Hop"], "hip-hop": ["msd:Hip-Hop"], "rap": ["msd:Hip-Hop"],
    "lo-fi": ["msd:chillout", "msd:chill", "msd:Mellow"], "lofi": ["msd:chillout", "msd:chill", "msd:Mellow"],
    "house": ["msd:House", "msd:dance", "mtt:dance", "mtt:techno"], "techno": ["mtt:techno", "msd:electronic"],
    "electronic": ["mtt:electronic", "msd:electronic", "msd:electronica", "msd:electro", "mtt:synth"],
    "edm": ["mtt:dance", "msd:dance", "msd:electro", "mtt:techno"], "dance": ["mtt:dance", "msd:dance", "msd:party"],
    "drum and bass": ["mtt:techno", "msd:electronic", "mtt:fast"], "dnb": ["mtt:techno", "msd:electronic", "mtt:fast"],
    "ambient": ["mtt:ambient", "msd:ambient", "mtt:new age"], "chill": ["msd:chill", "msd:chillout", "msd:Mellow"],
    "classical": ["mtt:classical", "mtt:classic", "mtt:strings"], "orchestral": ["mtt:classical", "mtt:strings"],
    "folk": ["msd:folk", "msd:acoustic"], "country": ["mtt:country", "msd:country"],
    "acoustic": ["msd:acoustic", "mtt:guitar"], "reggae": ["msd:oldies", "msd:chill"],
    "indian": ["mtt:indian", "mtt:sitar"], "opera": ["mtt:opera", "mtt:choral"], "choir": ["mtt:choir", "mtt:choral"],
    "new age": ["mtt:new age"], "experimental": ["msd:experimental", "mtt:weird"],
    "piano": ["mtt:piano"], "guitar": ["mtt:guitar", "msd:guitar"], "violin": ["mtt:violin", "mtt:strings"],
    "strings": ["mtt:strings", "mtt:violin", "mtt:cello"], "cello": ["mtt:cello", "mtt:strings"],
    "flute": ["mtt:flute"], "harp": ["mtt:harp"], "harpsichord": ["mtt:harpsichord"], "sitar": ["mtt:sitar"],
    "synth": ["mtt:synth", "mtt:electronic"], "synthesizer": ["mtt:synth", "mtt:electronic"],
    "drums": ["mtt:drums", "mtt:beat", "mtt:beats"], "beat": ["mtt:beat", "mtt:beats", "mtt:drums"],
    "vocals": ["mtt:vocal", "mtt:vocals", "mtt:singing", "mtt:voice"], "singing": ["mtt:singing", "mtt:vocal"],
    "instrumental": ["msd:instrumental", "mtt:no vocals", "mtt:no vocal", "mtt:no voice"],
    "slow": ["mtt:slow", "mtt:soft", "msd:Mellow"], "fast": ["mtt:fast", "mtt:beat"],
    "loud": ["mtt:loud"], "quiet": ["mtt:quiet", "mtt:soft"], "soft": ["mtt:soft", "mtt:quiet"],
    "calm": ["mtt:soft", "mtt:quiet", "mtt:ambient", "msd:Mellow"], "sad": ["msd:sad"], "happy": ["msd:happy"],
    "party": ["msd:party", "msd:dance"], "mellow": ["msd:Mellow", "mtt:soft"], "relaxing": ["msd:chillout", "msd:chill"],
    "80s": ["msd:80s"], "70s": ["msd:70s"], "60s": ["msd:60s"], "90s": ["msd:90s"],
}
TOP_K = 5


# ---------------------------------------------------------------- audio in
def load_file(path: str | Path) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and its sample rate; a clear DataError for a missing or unreadable file."""
    import soundfile as sf
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cannot read audio {path}: no such file")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types on bad files
        raise DataError(f"cannot read audio {path}: {e}") from e
    if audio.shape[0] == 0:
        raise DataError(f"cannot judge {path}: it holds no samples")
    return np.ascontiguousarray(audio.T), int(sr)


def mono(audio: np.ndarray, sr: int, target: int = ANALYSIS_SR) -> np.ndarray:
    """Mono float32 at `target` Hz from (samples,) or (channels, samples)."""
    y = np.asarray(audio, dtype=np.float32)
    y = y.mean(0) if y.ndim == 2 else y
    if sr != target:
        y = need("librosa", "resampling").resample(y, orig_sr=sr, target_sr=target)
    return y


# ---------------------------------------------------------------- pitch
def chroma_sequence(audio: np.ndarray, sr: int) -> np.ndarray:
    """librosa's CQT chroma (12, frames) at 22.05 kHz, hop 512 (each frame max-normalised)."""
    librosa = need("librosa", "chroma")
    return librosa.feature.chroma_cqt(y=mono(audio, sr), sr=ANALYSIS_SR, hop_length=512)


def pitch_class_profile(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mean of the (frame-normalised) chroma sequence, summing to 1 (index 0 = C)."""
    pcp = chroma_sequence(audio, sr).sum(1)
    return pcp / pcp.sum() if pcp.sum() > 0 else np.full(12, 1 / 12)


def key_from_profile(pcp: np.ndarray) -> tuple[str, float]:
    """The key whose rotated profile (Albrecht-Shanahan) correlates best with `pcp`, and that correlation."""
    pcp = np.asarray(pcp, dtype=float)
    if not np.any(pcp > 0) or np.allclose(pcp, pcp[0]):
        return "none", 0.0
    best = ("none", -2.0)
    for tonic in range(12):
        for mode, profile in (("major", MAJOR), ("minor", MINOR)):
            r = float(np.corrcoef(pcp, np.roll(profile, tonic))[0, 1])
            if r > best[1]:
                best = (f"{PITCH_CLASSES[tonic]} {mode}", r)
    return best


def read_key(audio: np.ndarray, sr: int) -> str:
    """The key of (channels, samples) or (samples,) audio from its chroma, e.g. "C major" or "A minor"
    (sharps, never flats)."""
    return key_from_profile(pitch_class_profile(audio, sr))[0]


def parse_key(text: str) -> str | None:
    """A key named in text ("in Bb minor", "A major", "F#m"), normalised like read_key, or None."""
    m = re.search(r"\b([A-G])([#b♯♭]?)\s*(major|minor|maj|min|m)\b", text or "", re.IGNORECASE)
    if m is None or not m.group(1).isupper():
        return None
    name = m.group(1) + m.group(2).replace("♯", "#").replace("♭", "b")
    name = _FLATS.get(name, name)
    mode = "major" if m.group(3).lower() in ("major", "maj") else "minor"
    return f"{name} {mode}"


def key_relation(named: str, read: str) -> str:
    """same | relative (same notes, other tonic: C major / A minor) | other."""
    if named == read:
        return "same"
    try:
        (tn, mn), (tr, mr) = (k.split() for k in (named, read))
        a, b = PITCH_CLASSES.index(tn), PITCH_CLASSES.index(tr)
    except ValueError:
        return "other"
    if mn != mr and (a + (9 if mn == "major" else 3)) % 12 == b:
        return "relative"
    return "other"


# ---------------------------------------------------------------- tempo, timbre
def read_tempo(audio: np.ndarray, sr: int) -> float:
    """BPM from librosa's beat tracker (librosa.beat.beat_track)."""
    return beats(audio, sr)[0]


def beats(audio: np.ndarray, sr: int) -> tuple[float, np.ndarray]:
    """(BPM, beat times in seconds) from librosa.beat.beat_track on the mono mix at 22.05 kHz."""
    librosa = need("librosa", "tempo and beats")
    tempo, frames = librosa.beat.beat_track(y=mono(audio, sr), sr=ANALYSIS_SR, hop_length=512)
    return float(np.atleast_1d(tempo)[0]), librosa.frames_to_time(frames, sr=ANALYSIS_SR, hop_length=512)


def timbre(audio: np.ndarray, sr: int) -> dict:
    """Spectral centroid and 95 % roll-off of the power spectrum (Hz; librosa on |STFT|^2, mono at
    22.05 kHz, n_fft 2048, mean over frames within 60 dB of the loudest) and EBU R128 integrated loudness (LUFS, pyloudnorm, at the
    file's own rate and channels)."""
    librosa = need("librosa", "timbre figures")
    y = mono(audio, sr)
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2   # power: where the energy is
    energy = S.sum(0)
    keep = energy > energy.max() * 1e-6 if energy.max() > 0 else np.ones_like(energy, bool)
    centroid = librosa.feature.spectral_centroid(S=S, sr=ANALYSIS_SR)[0][keep]
    rolloff = librosa.feature.spectral_rolloff(S=S, sr=ANALYSIS_SR, roll_percent=0.95)[0][keep]
    out = {"centroid_hz": float(centroid.mean()) if keep.any() else 0.0,
           "rolloff95_hz": float(rolloff.mean()) if keep.any() else 0.0}
    pyln = need("pyloudnorm", "EBU R128 loudness")
    x = np.asarray(audio, dtype=np.float64)
    x = x.T if x.ndim == 2 else x
    if len(x) < int(0.4 * sr):
        out["loudness_lufs"] = None  # R128 gating needs one 400 ms block
    else:
        with np.errstate(divide="ignore"):
            lufs = float(pyln.Meter(sr).integrated_loudness(x))
        out["loudness_lufs"] = lufs if np.isfinite(lufs) else None
    return out


# ---------------------------------------------------------------- tags
def tags(audio: np.ndarray, sr: int) -> dict[str, dict[str, float]]:
    """{"mtt": {tag: p}, "msd": {tag: p}}: musicnn's probabilities averaged over 3 s patches."""
    need("librosa", "musicnn's log-mel front end")
    from .musicnn import tag
    return {d: tag(audio, sr, d) for d in ("mtt", "msd")}


def top_tags(probs: dict[str, float], k: int = TOP_K) -> list[tuple[str, float]]:
    return sorted(probs.items(), key=lambda kv: -kv[1])[:k]


def prompt_words(prompt: str) -> list[str]:
    """The WORD_TAGS words a prompt uses, in its order (whole words, longest match wins, any case)."""
    text = " " + re.sub(r"[^a-z0-9&\-]+", " ", (prompt or "").lower()) + " "
    found = []
    for word in sorted(WORD_TAGS, key=len, reverse=True):
        at = text.find(f" {word} ")
        if at >= 0:
            found.append((at, word))
            text = text.replace(f" {word} ", " " + "_" * len(word) + " ")  # keep positions for the order
    return [w for _, w in sorted(found)]


def tag_agreement(prompt: str, probs: dict[str, dict[str, float]], k: int = TOP_K) -> dict:
    """Per mapped prompt word: its best tag, that tag's rank in its tagger (0 = most probable) and
    probability; `agreement` = share of mapped words with a tag in the top k (None without any)."""
    words = {}
    for word in prompt_words(prompt):
        best = None
        for ref in WORD_TAGS[word]:
            d, name = ref.split(":", 1)
            ranked = [t for t, _ in top_tags(probs[d], len(probs[d]))]
            cand = (ranked.index(name), -probs[d][name], ref)
            best = cand if best is None or cand < best else best
        words[word] = {"tag": best[2], "rank": best[0], "p": -best[1], "agrees": best[0] < k}
    return {"words": words, "agreement": (float(np.mean([w["agrees"] for w in words.values()])) if words else None),
            "top_k": k}


# ---------------------------------------------------------------- the whole judge
def _section(fn):
    try:
        return fn()
    except JudgeUnavailable as e:
        return {"unavailable": str(e)}


def judge_audio(audio: np.ndarray, sr: int, prompt: str | None = None, notes: bool = True) -> dict:
    """Every judge figure for (channels, samples) audio; see the module docstring."""
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[None] if audio.ndim == 1 else audio
    out: dict = {"seconds": audio.shape[-1] / sr, "sample_rate": sr, "channels": audio.shape[0]}
    probs = _section(lambda: tags(audio, sr))
    out["tags"] = probs if "unavailable" in probs else {d: dict(top_tags(p)) for d, p in probs.items()}

    def chroma_part():
        pcp = pitch_class_profile(audio, sr)
        key, r = key_from_profile(pcp)
        return {"key": key, "key_correlation": r, "pcp": [round(float(v), 4) for v in pcp]}
    out["chroma"] = _section(chroma_part)

    def notes_part():
        ev = transcribe(audio, sr)
        pcp = note_pcp(ev)
        key, r = key_from_profile(pcp)
        return {"count": len(ev), "key": key, "key_correlation": r, "pcp": [round(float(v), 4) for v in pcp],
                "pitch_range": [min(n[2] for n in ev), max(n[2] for n in ev)] if ev else None}
    if notes:
        out["notes"] = _section(notes_part)

    def tempo_part():
        bpm, times = beats(audio, sr)
        return {"bpm": bpm, "beats": len(times), "beat_times": [round(float(t), 3) for t in times]}
    out["tempo"] = _section(tempo_part)
    out["timbre"] = _section(lambda: timbre(audio, sr))
    if prompt is not None:
        out["prompt"] = prompt_agreement(prompt, out, probs)
    return out


def prompt_agreement(prompt: str, judged: dict, probs: dict) -> dict:
    """Tags vs the prompt's words, tempo vs the BPM it names, key vs the key it names."""
    from ..engine.beat import bpm_from_text
    res: dict = {"text": prompt}
    res["tags"] = probs if "unavailable" in probs else tag_agreement(prompt, probs)
    named = bpm_from_text(prompt)
    bpm = (judged.get("tempo") or {}).get("bpm")
    if named is not None and bpm:
        folded = min(abs(bpm * f - named) / named for f in (0.5, 1.0, 2.0))
        res["tempo"] = {"named_bpm": named, "read_bpm": bpm, "error": abs(bpm - named) / named,
                        "error_octave_folded": folded}
    key = parse_key(prompt)
    read = (judged.get("chroma") or {}).get("key")
    if key is not None and read:
        res["key"] = {"named": key, "read": read, "relation": key_relation(key, read),
                      "notes_read": (judged.get("notes") or {}).get("key")}
    return res


def judge_file(path: str | Path, prompt: str | None = None) -> dict:
    """`judge_audio` of an audio file (any format soundfile reads); DataError if it cannot be read."""
    audio, sr = load_file(path)
    return {"file": str(path), **judge_audio(audio, sr, prompt)}
