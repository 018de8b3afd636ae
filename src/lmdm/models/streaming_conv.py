"""Weight-normalised 1-D convolutions, and exact streaming versions of stacks built from them.

`WNConv1d` / `WNConvTranspose1d` hold `weight_g` and `weight_v` (and `bias`) exactly as
`torch.nn.utils.weight_norm(conv, dim=0)` names them, so stable-audio-tools checkpoints load
one-to-one, without the deprecated weight-norm hooks: weight = g * v / ||v||, the norm taken over
every dimension but 0 (for a transposed conv, dim 0 is the *input*-channel axis of its
(in, out, k) weight, as torch's weight_norm does it).

Streaming. `streaming(module)` builds a stateful twin of a conv stack (WN convs, pointwise
activations, `nn.Sequential`, modules with their own `streaming()`) that takes its input in
pieces of any length and returns every output sample whose inputs are all known:
- a conv keeps the tail of its input it still needs (its left zero padding is the initial tail;
  the right zero padding is appended by `flush`), and computes each output sample exactly once;
- a transposed conv keeps its overlap-add tail, emits the finished part, and drops `padding`
  samples at both ends of the whole stream, as the offline crop does;
- a residual block (`StreamingResidual`) delays its skip path to meet its branch's lagging output.
So the concatenated outputs equal the offline forward on the whole signal, for the price of the
offline forward: no window is decoded twice. States are plain tensors, reset with `reset()`.
Works on (B, C, T) or channels-last (B, C, 1, T) tensors; time is always the last dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def fold_weight_norm(g: Tensor, v: Tensor) -> Tensor:
    """g * v / ||v||, the norm over all dims but 0; in fp32 whatever the parameter dtype."""
    v32 = v.float()
    return (v32 * (g.float() / v32.norm(dim=tuple(range(1, v.dim())), keepdim=True))).to(v.dtype)


def to_channels_last(x: Tensor) -> Tensor:
    """(B, C, T) -> (B, C, 1, T) in channels-last memory, i.e. (B, T, C) underneath: the layout in
    which oneDNN runs these convolutions fastest on CPU (about 1.5x at 128-256 channels in bf16)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_channels_last(x: Tensor) -> Tensor:
    return x.squeeze(2).contiguous()


class _WeightNormConv(nn.Module):
    """Shared parameters and weight folding of the two weight-normalised convs.

    Both accept (B, C, T) tensors, or (B, C, 1, T) channels-last ones (see `to_channels_last`),
    returning the same kind."""

    def _init_params(self, shape: tuple[int, ...], bias_size: int, bias: bool) -> None:
        self.weight_v = nn.Parameter(torch.empty(shape))
        self.weight_g = nn.Parameter(torch.empty(shape[0], *([1] * (len(shape) - 1))))
        self.bias = nn.Parameter(torch.empty(bias_size)) if bias else None
        self._folded: dict = {}
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # torch's Conv default init for v; g = ||v|| so the initial weight is v (as weight_norm)
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        self.weight_g.copy_(self.weight_v.norm(dim=tuple(range(1, self.weight_v.dim())), keepdim=True))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight_v)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """The folded weight, in torch's layout."""
        return self._weight("plain")

    def _layout(self, w: Tensor, layout: str) -> Tensor:
        return w

    def _weight(self, layout: str) -> Tensor:
        """The folded weight in a layout for the kernel at hand. Recomputed when autograd records
        (so gradients reach g and v); otherwise cached, keyed on the parameters' storage and version
        counters, so an in-place update, `load_state_dict` or `.to()` never meets a stale weight."""
        g, v = self.weight_g, self.weight_v
        if torch.is_grad_enabled() and (g.requires_grad or v.requires_grad):
            return self._layout(fold_weight_norm(g, v), layout)
        key = (g.data_ptr(), v.data_ptr(), g._version, v._version, v.dtype, v.device)
        hit = self._folded.get(layout)
        if hit is None or hit[0] != key:
            # the detached sources pin their storage, so a matching data_ptr cannot be a reuse
            hit = (key, g.detach(), v.detach(), self._layout(fold_weight_norm(g.detach(), v.detach()), layout))
            self._folded[layout] = hit
        return hit[3]

    def _apply(self, fn, recurse=True):
        self._folded = {}
        return super()._apply(fn, recurse)


class WNConv1d(_WeightNormConv):
    """Conv1d with weight normalisation (parameters `weight_g`, `weight_v`, `bias`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self._init_params((out_channels, in_channels, kernel_size), out_channels, bias)

    @property
    def span(self) -> int:
        """Input samples one output sample sees."""
        return self.dilation * (self.kernel_size - 1) + 1

    def _layout(self, w: Tensor, layout: str) -> Tensor:
        return w.unsqueeze(2).contiguous(memory_format=torch.channels_last) if layout == "cl" else w

    def conv(self, x: Tensor, padding: int) -> Tensor:
        if x.dim() == 4:
            return F.conv2d(x, self._weight("cl"), self.bias, (1, self.stride), (0, padding), (1, self.dilation))
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")


class WNConvTranspose1d(_WeightNormConv):
    """ConvTranspose1d with weight normalisation; weight (in, out, k), g of shape (in, 1, 1).
    Only kernel_size == 2 * stride (Oobleck's upsamplers), where each output sample sums exactly
    two taps, which the channels-last path exploits."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        if kernel_size != 2 * stride or padding > stride:
            raise ValueError(f"WNConvTranspose1d supports kernel_size == 2 * stride and padding <= stride, "
                             f"got {kernel_size}, {stride}, {padding}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self._init_params((in_channels, out_channels, kernel_size), out_channels, bias)

    def _layout(self, w: Tensor, layout: str) -> Tensor:
        if layout == "cl":
            return w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if layout == "linear":  # (k * out, in): row r * out + c holds tap r of output channel c
            return w.permute(2, 1, 0).reshape(-1, w.shape[0]).contiguous()
        return w

    def full(self, x: Tensor) -> Tensor:
        """The uncropped, bias-free output: (T - 1) * stride + kernel_size = (T + 1) * stride samples."""
        if x.dim() == 3:
            return F.conv_transpose1d(x, self.weight, None, self.stride)
        b, _, _, t = x.shape
        s, c = self.stride, self.out_channels
        if t >= 64:
            return F.conv_transpose2d(x, self._weight("cl"), None, (1, s))
        # few input frames (the first upsampler sees 21.5 per second): oneDNN's deconvolution is slow
        # there (~70 GFLOP/s in bf16), one GEMM and a two-tap overlap-add is ~4x faster
        taps = F.linear(x[:, :, 0].transpose(1, 2), self._weight("linear")).view(b, t, 2, s, c)
        out = torch.cat((taps[:, :1, 0], taps[:, 1:, 0] + taps[:, :-1, 1], taps[:, t - 1:, 1]), 1)  # autograd-safe
        return out.view(b, (t + 1) * s, c).transpose(1, 2).unsqueeze(2)  # channels-last (B, C, 1, L)

    def add_bias(self, y: Tensor) -> Tensor:
        if self.bias is None:
            return y
        return y + self.bias.view(-1, *([1] * (y.dim() - 2)))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding)
        z = self.full(x)
        return self.add_bias(z[..., self.padding:z.shape[-1] - self.padding])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


# ---------------------------------------------------------------------------------------------
# Streaming twins. Each has step(x) -> output so far (None when there is none yet), flush() ->
# the rest at end of stream, and reset(). Inputs (B, C, T) or (B, C, 1, T); T may be 0.


def _cat(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None or b is None:
        return b if a is None else a
    return torch.cat((a, b), dim=-1)


def _zeros(x: Tensor, length: int) -> Tensor:
    """Zeros shaped like x but `length` long in time, in x's memory layout."""
    z = x.new_zeros(*x.shape[:-1], length)
    return z.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else z


def _join(a: Tensor, b: Tensor) -> Tensor:
    """Concatenate in time; b itself when a is empty (a 1x1 conv keeps no tail: no copy). For 4-D
    tensors the result is channels-last even when a piece one sample long looks contiguous both
    ways (torch.cat would then pick the slow NCHW layout)."""
    if a.shape[-1] == 0:
        return b
    if a.dim() != 4:
        return torch.cat((a, b), dim=-1)
    out = torch.empty(*a.shape[:-1], a.shape[-1] + b.shape[-1], dtype=a.dtype, device=a.device,
                      memory_format=torch.channels_last)
    return torch.cat((a, b), dim=-1, out=out)


def _restore(x: Tensor | None) -> Tensor | None:
    """A saved piece of state back in the layout the twins compute in (channels-last when 4-D)."""
    if x is None:
        return None
    return x.clone().contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.clone()


class StreamingConv1d:
    def __init__(self, conv: WNConv1d):
        if conv.span < conv.stride:
            raise ValueError("streaming needs kernel span >= stride")  # never true in Oobleck
        self.conv = conv
        self.reset()

    def reset(self) -> None:
        self.buf: Tensor | None = None  # input not yet consumed (starts as the left zero padding)

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {} if self.buf is None else {prefix + "buf": self.buf}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.buf = _restore(state.get(prefix + "buf"))

    def _run(self, buf: Tensor) -> Tensor | None:
        c = self.conv
        n = (buf.shape[-1] - c.span) // c.stride + 1
        if n <= 0:
            self.buf = buf
            return None
        y = c.conv(buf[..., :(n - 1) * c.stride + c.span], 0)
        self.buf = buf[..., n * c.stride:].clone()  # clone: do not pin the whole joined buffer
        return y

    def step(self, x: Tensor) -> Tensor | None:
        if self.buf is None:
            self.buf = _zeros(x, self.conv.padding)
        return self._run(_join(self.buf, x))

    def flush(self) -> Tensor | None:
        if self.buf is None:
            return None
        buf = _join(self.buf, _zeros(self.buf, self.conv.padding))
        self.buf = None
        return self._run(buf)


class StreamingConvTranspose1d:
    def __init__(self, conv: WNConvTranspose1d):
        self.conv = conv
        self.reset()

    def reset(self) -> None:
        self.tail: Tensor | None = None  # last `stride` samples of the full output, bias not yet added
        self.to_skip = self.conv.padding  # the offline crop at the start

    def state(self, prefix: str) -> dict[str, Tensor]:
        out = {prefix + "to_skip": torch.tensor(self.to_skip)}
        return out if self.tail is None else {**out, prefix + "tail": self.tail}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.tail = _restore(state.get(prefix + "tail"))
        self.to_skip = int(state[prefix + "to_skip"])

    def _emit(self, y: Tensor) -> Tensor | None:
        skip = min(self.to_skip, y.shape[-1])
        self.to_skip -= skip
        y = y[..., skip:]
        return self.conv.add_bias(y) if y.shape[-1] else None

    def step(self, x: Tensor) -> Tensor | None:
        n, s = x.shape[-1], self.conv.stride
        if n == 0:
            return None
        z = self.conv.full(x)  # (n + 1) * stride samples; the last stride overlap the next input's
        if self.tail is not None:
            z[..., :s] += self.tail
        self.tail = z[..., n * s:].clone()
        return self._emit(z[..., :n * s])

    def flush(self) -> Tensor | None:
        if self.tail is None:
            return None
        tail, self.tail = self.tail, None
        return self._emit(tail[..., :tail.shape[-1] - self.conv.padding])  # the offline crop at the end


class StreamingPointwise:
    """A sample-wise module (activation, identity): no state."""

    def __init__(self, module: nn.Module):
        self.module = module

    def reset(self) -> None:
        pass

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        pass

    def step(self, x: Tensor) -> Tensor | None:
        return self.module(x) if x.shape[-1] else None

    def flush(self) -> None:
        return None


class StreamingSequential:
    def __init__(self, layers: list):
        self.layers = layers

    def reset(self) -> None:
        for layer in self.layers:
            layer.reset()

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {k: v for i, layer in enumerate(self.layers) for k, v in layer.state(f"{prefix}{i}.").items()}

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        for i, layer in enumerate(self.layers):
            layer.load_state(state, f"{prefix}{i}.")

    def step(self, x: Tensor) -> Tensor | None:
        for layer in self.layers:
            # an empty piece still goes through, so every layer learns batch, channels and dtype
            x = layer.step(x) if x is not None else None
            if x is None:
                return None
        return x

    def flush(self) -> Tensor | None:
        # each layer's end of stream: whatever the previous one still had, then its own padding
        y = None
        for layer in self.layers:
            y = _cat(layer.step(y) if y is not None else None, layer.flush())
        return y


class StreamingResidual:
    """x + branch(x), with x delayed to meet the branch's lagging output. The branch must return
    fresh tensors (it ends in a conv): the skip is added into them in place, piece by piece, so
    the delay line costs no copy."""

    def __init__(self, branch):
        self.branch = branch
        self.reset()

    def reset(self) -> None:
        self.branch.reset()
        self.pending: list[Tensor] = []  # inputs (views) not yet matched by branch output

    def state(self, prefix: str) -> dict[str, Tensor]:
        out = self.branch.state(prefix + "branch.")
        if self.pending:  # one piece holds the same samples: the skip adds them one by one anyway
            out[prefix + "pending"] = torch.cat(self.pending, dim=-1)
        return out

    def load_state(self, state: dict[str, Tensor], prefix: str) -> None:
        self.branch.load_state(state, prefix + "branch.")
        pending = _restore(state.get(prefix + "pending"))
        self.pending = [] if pending is None else [pending]

    def _add(self, y: Tensor | None) -> Tensor | None:
        if y is None:
            return None
        t, n = 0, y.shape[-1]
        while t < n:
            piece = self.pending[0]
            k = min(piece.shape[-1], n - t)
            y[..., t:t + k] += piece[..., :k]  # == x + branch(x) bit for bit: IEEE addition commutes
            if k == piece.shape[-1]:
                self.pending.pop(0)
            else:  # a short remainder: copy it rather than pin the whole input it is a view of
                self.pending[0] = piece[..., k:].clone()
            t += k
        return y

    def step(self, x: Tensor) -> Tensor | None:
        if x.shape[-1]:
            self.pending.append(x)
        return self._add(self.branch.step(x))

    def flush(self) -> Tensor | None:
        out = self._add(self.branch.flush())
        self.pending = []
        return out


POINTWISE: tuple[type, ...] = (nn.Identity, nn.Tanh, nn.ELU)


def streaming(module: nn.Module):
    """The streaming twin of a conv stack. A module class opts in with a `streaming()` method
    (returning its twin) or, if it acts sample by sample, a class attribute `pointwise = True`.
    Raises TypeError on anything else: better than a silently inexact stream."""
    if hasattr(module, "streaming"):
        return module.streaming()
    if isinstance(module, WNConv1d):
        return StreamingConv1d(module)
    if isinstance(module, WNConvTranspose1d):
        return StreamingConvTranspose1d(module)
    if isinstance(module, POINTWISE) or getattr(module, "pointwise", False):
        return StreamingPointwise(module)
    if isinstance(module, nn.Sequential):
        return StreamingSequential([streaming(m) for m in module])
    raise TypeError(f"no exact streaming version of {type(module).__name__}")
