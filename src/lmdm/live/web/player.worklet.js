// Playback ring buffer. The main thread posts planar blocks (already at the context's rate);
// this thread plays them. When the ring runs dry it fades out (cos) what it has, counts an
// underrun and waits for `prebuffer` samples before fading back in (sin): equal-power fades,
// only at underruns; a gapless stream passes through untouched.
class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.channels = o.channels; this.size = o.size; this.prebuffer = o.prebuffer; this.fade = o.fade;
    this.ring = Array.from({ length: this.channels }, () => new Float32Array(this.size));
    this.read = 0; this.write = 0; this.avail = 0;
    this.state = 'waiting';   // waiting (prebuffering) | playing | stopped
    this.fadeIn = 0; this.underruns = 0; this.played = 0; this.overflow = 0; this.lastReport = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'block') this.push(m.channels);
      else if (m.type === 'stop') { this.state = 'stopped'; this.avail = 0; this.read = this.write; }
      else if (m.type === 'start') { this.state = 'waiting'; }
    };
  }
  push(channels) {
    const n = channels[0].length;
    if (this.avail + n > this.size) { this.overflow++; return; }  // never overwrite unplayed audio
    for (let c = 0; c < this.channels; c++) {
      const src = channels[Math.min(c, channels.length - 1)], dst = this.ring[c];
      for (let i = 0, w = this.write; i < n; i++, w = (w + 1) % this.size) dst[w] = src[i];
    }
    this.write = (this.write + n) % this.size; this.avail += n;
  }
  process(inputs, outputs) {
    const out = outputs[0], n = out[0].length;
    if (this.state === 'waiting' && this.avail >= this.prebuffer) { this.state = 'playing'; this.fadeIn = this.fade; }
    if (this.state === 'playing') {
      const take = Math.min(n, this.avail), dry = take < n;
      const fadeOut = dry ? take : 0;  // running dry: fade out what is left
      for (let c = 0; c < out.length; c++) {
        const ring = this.ring[Math.min(c, this.channels - 1)];
        for (let i = 0, r = this.read; i < n; i++, r = (r + 1) % this.size) {
          if (i >= take) { out[c][i] = 0; continue; }
          let g = 1;
          if (this.fadeIn > 0) g *= Math.sin(0.5 * Math.PI * (1 - (this.fadeIn - i) / this.fade));
          if (fadeOut) g *= Math.cos(0.5 * Math.PI * (i + 1) / fadeOut);
          out[c][i] = ring[r] * g;
        }
      }
      this.fadeIn = Math.max(0, this.fadeIn - n);
      this.read = (this.read + take) % this.size; this.avail -= take; this.played += take;
      if (dry) { this.underruns++; this.state = 'waiting'; }
    } else {
      for (const ch of out) ch.fill(0);
    }
    if (currentTime - this.lastReport > 0.1) {
      this.lastReport = currentTime;
      this.port.postMessage({ type: 'stats', avail: this.avail, underruns: this.underruns, played: this.played,
                              overflow: this.overflow, state: this.state });
    }
    return true;
  }
}
registerProcessor('lmdm-player', Player);
