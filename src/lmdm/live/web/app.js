// lmdm live — browser client. No build step, no dependencies: plain DOM, WebSocket, AudioWorklet.
'use strict';
const $ = (id) => document.getElementById(id);
const HEADER = 24, MAGIC = 0x4d444d4c;  // "LMDM" little-endian
const stats = window.lmdmStats = { blocksReceived: 0, outOfOrder: 0, underruns: 0, lastBlockIndex: -1, rtf: 0, bufferMs: 0,
  latencyMs: null, overflow: 0, errors: 0, acks: 0, sampleRate: 0, contextRate: 0, playing: false };
let ws, info, ctx, player, analyser, resampler = null, nextId = 1, playing = false;
let prompts = [{ text: 'warm lo-fi piano, 80 BPM', weight: 1 }];
const pending = new Map();      // control id -> send time (ms)
const blockStart = new Map();   // block index -> played-sample position where it starts
let received = 0;               // samples (context rate) pushed to the player
let watch = [];                 // [{pos, sent}] waiting to be heard, for the latency figure
let recording = null, micNode = null, micStream = null, micIndex = 0;

function send(msg) {
  if (!ws || ws.readyState !== 1) return null;
  msg = { id: nextId++, ...msg };
  pending.set(msg.id, performance.now());
  ws.send(JSON.stringify(msg));
  return msg.id;
}
function say(text) { $('message').textContent = text; }

function connect() {
  // a server listening beyond loopback wants the token its printed URL carries (?token=...)
  const token = new URLSearchParams(location.search).get('token');
  ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`
    + (token ? `?token=${encodeURIComponent(token)}` : ''));
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => (typeof e.data === 'string' ? onJson(JSON.parse(e.data)) : onBlock(e.data));
  ws.onclose = () => { say('disconnected from server; reload to reconnect'); setPlaying(false); };
}

function onJson(m) {
  if (m.type === 'hello') {
    info = m; stats.sampleRate = m.sample_rate; $('steps').value = m.default_steps; $('block').value = m.block_frames;
    if (m.default_sketch_cfg !== undefined) {
      $('sketch-cfg').value = m.default_sketch_cfg; $('sketch-cfg-out').textContent = (+m.default_sketch_cfg).toFixed(1);
    }
    if (m.default_control_guidance !== undefined) {
      $('control-guidance').value = m.default_control_guidance;
      $('control-guidance-out').textContent = (+m.default_control_guidance).toFixed(2);
    }
    $('prompt-guidance').value = m.default_prompt_guidance || 0;
    $('prompt-guidance-out').textContent = (+(m.default_prompt_guidance || 0)).toFixed(2);
    $('prompt-guidance').disabled = !m.prompt_probe;
    $('prompt-guidance').title = m.prompt_probe ? '' : 'this model has no prompt probe';
    $('bpm').disabled = !m.beat_clock;
    $('bpm').title = m.beat_clock ? '' : 'this model has no beat clock: it picks its own tempo';
    const supported = m.supported_modes || ['text'];  // modes this model cannot do are greyed out
    for (const o of $('mode').options) {
      o.disabled = !supported.includes(o.value);
      o.title = o.disabled ? ((m.unsupported_modes || {})[o.value] || 'not supported by this model') : '';
    }
  } else if (m.type === 'ack') {
    stats.acks++;
    const sent = pending.get(m.id); pending.delete(m.id);
    // a superseded control (a later one of the same kind replaced it in the queue) lands on no block
    if (sent !== undefined && m.cmd !== 'start' && !m.superseded) watch.push({ block: m.block, sent });
  } else if (m.type === 'error') {
    stats.errors++; pending.delete(m.id); say(`server: ${m.message}`);
  } else if (m.type === 'status') {
    stats.rtf = m.rtf;
  }
}

function onBlock(buf) {
  const view = new DataView(buf);
  if (view.getUint32(0, true) !== MAGIC) return;
  const dtype = view.getUint8(5), channels = view.getUint16(6, true);
  const index = Number(view.getBigUint64(8, true)), n = view.getUint32(20, true);
  const planes = [];
  for (let c = 0; c < channels; c++) {
    if (dtype === 0) planes.push(new Float32Array(buf, HEADER + 4 * c * n, n));
    else { const s = new Int16Array(buf, HEADER + 2 * c * n, n); planes.push(Float32Array.from(s, (v) => v / 32767)); }
  }
  if (index !== stats.lastBlockIndex + 1) stats.outOfOrder++;   // the server's counter is gapless from 0
  stats.blocksReceived++; stats.lastBlockIndex = index;
  if (recording) recording.push(planes.map((p) => p.slice()));
  if (!playing || !player) return;
  const out = resampler ? resampler.process(planes) : planes.map((p) => p.slice());
  blockStart.set(index, received); received += out[0].length;
  player.port.postMessage({ type: 'block', channels: out }, out.map((p) => p.buffer));
}

// Linear-interpolating resampler that keeps its phase across blocks (no seams), used only when
// the browser would not open an AudioContext at the model's rate.
class Resampler {
  constructor(from, to, channels) { this.step = from / to; this.pos = 0; this.last = new Float32Array(channels); }
  process(planes) {
    const n = planes[0].length, out = [];
    const count = Math.max(0, Math.ceil((n - this.pos) / this.step));
    for (let c = 0; c < planes.length; c++) {
      const x = planes[c], y = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const t = this.pos + i * this.step, k = Math.floor(t), f = t - k;
        const a = k < 0 ? this.last[c] : x[k], b = k + 1 < n ? x[k + 1] : x[n - 1];
        y[i] = a + (b - a) * f;
      }
      this.last[c] = x[n - 1]; out.push(y);
    }
    this.pos = this.pos + count * this.step - n;
    return out;
  }
}

async function ensureAudio() {
  if (ctx) return;
  try { ctx = new AudioContext({ sampleRate: info.sample_rate, latencyHint: 'interactive' }); }
  catch (e) { ctx = new AudioContext({ latencyHint: 'interactive' }); }
  stats.contextRate = ctx.sampleRate;
  if (ctx.sampleRate !== info.sample_rate) resampler = new Resampler(info.sample_rate, ctx.sampleRate, info.channels);
  await ctx.audioWorklet.addModule('/static/player.worklet.js');
  await ctx.audioWorklet.addModule('/static/mic.worklet.js');
  const block = Math.ceil(info.block_samples * ctx.sampleRate / info.sample_rate);
  player = new AudioWorkletNode(ctx, 'lmdm-player', { numberOfInputs: 0, outputChannelCount: [info.channels],
    processorOptions: { channels: info.channels, size: Math.max(ctx.sampleRate * 4, 16 * block),
                        // two blocks, but never more than 0.5 s: long blocks (the default model's 2.2 s)
                        // arrive whole, and the server keeps `lead` (0.6 s) of audio ahead anyway
                        prebuffer: Math.max(Math.round(0.2 * ctx.sampleRate), Math.min(2 * block, Math.round(0.5 * ctx.sampleRate))),
                        fade: Math.round(0.005 * ctx.sampleRate) } });
  player.port.onmessage = (e) => onPlayerStats(e.data);
  analyser = ctx.createAnalyser(); analyser.fftSize = 1024; analyser.smoothingTimeConstant = 0;
  player.connect(analyser); analyser.connect(ctx.destination);
  requestAnimationFrame(draw);
}

function onPlayerStats(s) {
  stats.underruns = s.underruns; stats.overflow = s.overflow;
  stats.bufferMs = 1000 * s.avail / ctx.sampleRate;
  const outMs = 1000 * ((ctx.outputLatency || 0) + ctx.baseLatency);
  // control-to-ear latency: from sending a control until the first block under it is played
  watch = watch.filter((w) => {
    const pos = blockStart.get(w.block);
    if (pos === undefined || s.played < pos) return true;
    stats.latencyMs = performance.now() - w.sent + outMs; return false;
  });
  $('status').textContent = `${playing ? 'playing' : 'stopped'} · block ${stats.lastBlockIndex} · RTF ${stats.rtf.toFixed(2)}`
    + ` · buffer ${stats.bufferMs.toFixed(0)} ms · latency ${stats.latencyMs === null ? '–' : stats.latencyMs.toFixed(0) + ' ms'}`
    + ` · underruns ${stats.underruns} · ${info.sample_rate} Hz` + (resampler ? ` → ${ctx.sampleRate} Hz` : '');
}

function setPlaying(on) {
  playing = stats.playing = on; $('play').disabled = on; $('stop').disabled = !on;
}

async function play() {
  await ensureAudio(); await ctx.resume();
  player.port.postMessage({ type: 'start' });
  setPlaying(true);
  send({ type: 'start', prompts, seed: +$('seed').value, steps: +$('steps').value, cfg: +$('cfg').value,
         block: +$('block').value,
         pace: 'realtime', lead: 0.6, ahead: 4, format: 'f32' });
}

function stop() {
  send({ type: 'stop' }); setPlaying(false);
  if (player) player.port.postMessage({ type: 'stop' });
}

// -- prompts ---------------------------------------------------------------------------------
function renderPrompts() {
  const ul = $('prompts'); ul.textContent = '';
  prompts.forEach((p, i) => {
    const li = document.createElement('li');
    const text = Object.assign(document.createElement('input'), { type: 'text', value: p.text, maxLength: 500 });
    const w = Object.assign(document.createElement('input'), { type: 'range', min: 0.01, max: 2, step: 0.01, value: p.weight });
    const out = Object.assign(document.createElement('output'), { textContent: p.weight.toFixed(2) });
    const del = Object.assign(document.createElement('button'), { textContent: '×', title: 'remove', disabled: prompts.length < 2 });
    text.onchange = () => { p.text = text.value; send({ type: 'prompts', prompts }); };
    w.oninput = () => { p.weight = +w.value; out.textContent = p.weight.toFixed(2); scheduleWeights(); };
    del.onclick = () => { prompts.splice(i, 1); renderPrompts(); send({ type: 'prompts', prompts }); };
    w.className = 'weight'; li.append(text, w, out, del); ul.append(li);
  });
}
let weightsQueued = false;
function scheduleWeights() {  // at most one weights message per frame while a slider moves
  if (weightsQueued) return; weightsQueued = true;
  requestAnimationFrame(() => { weightsQueued = false; send({ type: 'weights', weights: prompts.map((p) => p.weight) }); });
}

// -- microphone --------------------------------------------------------------------------------
async function toggleMic(on) {
  if (!on) { micStream?.getTracks().forEach((t) => t.stop()); micNode?.disconnect(); micNode = null; return; }
  await ensureAudio();
  try { micStream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false } }); }
  catch (e) { say(`microphone: ${e.message}`); $('mic').checked = false; return; }
  micNode = new AudioWorkletNode(ctx, 'lmdm-mic');
  micNode.port.onmessage = (e) => {
    if (!ws || ws.readyState !== 1) return;
    const x = e.data, buf = new ArrayBuffer(HEADER + 4 * x.length), v = new DataView(buf);
    v.setUint32(0, MAGIC, true); v.setUint8(4, 1); v.setUint8(5, 0); v.setUint16(6, 1, true);
    v.setBigUint64(8, BigInt(micIndex++), true); v.setUint32(16, ctx.sampleRate, true); v.setUint32(20, x.length, true);
    new Float32Array(buf, HEADER).set(x); ws.send(buf);
  };
  ctx.createMediaStreamSource(micStream).connect(micNode);
}

// -- recording -------------------------------------------------------------------------------
function toggleRecord() {
  const btn = $('record');
  if (!recording) { recording = []; btn.classList.add('on'); btn.textContent = '■ Rec'; $('download').hidden = true; return; }
  const blocks = recording; recording = null; btn.classList.remove('on'); btn.textContent = '● Rec';
  const a = $('download'); a.href = URL.createObjectURL(wav(blocks, info.sample_rate, info.channels));
  a.download = `lmdm-${new Date().toISOString().replace(/[:.]/g, '-')}.wav`; a.hidden = false;
}
function wav(blocks, rate, channels) {  // 16-bit PCM, interleaved
  const n = blocks.reduce((s, b) => s + b[0].length, 0), buf = new ArrayBuffer(44 + 2 * n * channels), v = new DataView(buf);
  const str = (o, s) => [...s].forEach((ch, i) => v.setUint8(o + i, ch.charCodeAt(0)));
  str(0, 'RIFF'); v.setUint32(4, 36 + 2 * n * channels, true); str(8, 'WAVEfmt '); v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); v.setUint16(22, channels, true); v.setUint32(24, rate, true);
  v.setUint32(28, rate * channels * 2, true); v.setUint16(32, channels * 2, true); v.setUint16(34, 16, true);
  str(36, 'data'); v.setUint32(40, 2 * n * channels, true);
  let o = 44;
  for (const b of blocks) for (let i = 0; i < b[0].length; i++) for (let c = 0; c < channels; c++, o += 2)
    v.setInt16(o, Math.max(-1, Math.min(1, b[c][i])) * 32767, true);
  return new Blob([buf], { type: 'audio/wav' });
}

// -- meter and spectrogram -------------------------------------------------------------------
function draw() {
  const spec = $('spectrogram'), sg = spec.getContext('2d'), meter = $('meter'), mg = meter.getContext('2d');
  const freq = new Uint8Array(analyser.frequencyBinCount), time = new Float32Array(analyser.fftSize);
  analyser.getByteFrequencyData(freq); analyser.getFloatTimeDomainData(time);
  sg.drawImage(spec, -2, 0);  // scroll left by two pixels per frame
  const h = spec.height;
  for (let y = 0; y < h; y++) {  // log-frequency rows: low at the bottom
    const bin = Math.min(freq.length - 1, Math.floor(Math.pow(freq.length, y / h)));
    const v = freq[bin];
    sg.fillStyle = `rgb(${v},${Math.floor(v * 0.8)},${Math.floor(255 - v * 0.6)})`;
    sg.fillRect(spec.width - 2, h - y - 1, 2, 1);
  }
  const rms = Math.sqrt(time.reduce((s, x) => s + x * x, 0) / time.length);
  const db = Math.max(-60, 20 * Math.log10(rms + 1e-9)), level = (db + 60) / 60;
  mg.fillStyle = '#000'; mg.fillRect(0, 0, meter.width, meter.height);
  mg.fillStyle = db > -3 ? '#e0524c' : db > -12 ? '#f0a35e' : '#5ad1a5';
  mg.fillRect(0, meter.height * (1 - level), meter.width, meter.height * level);
  requestAnimationFrame(draw);
}

// -- wiring ----------------------------------------------------------------------------------
$('play').onclick = play;
$('stop').onclick = stop;
$('reset').onclick = () => send({ type: 'reset' });
$('record').onclick = toggleRecord;
$('mic').onchange = (e) => toggleMic(e.target.checked);
$('cfg').oninput = (e) => { $('cfg-out').textContent = (+e.target.value).toFixed(1); };
$('cfg').onchange = (e) => send({ type: 'cfg', scale: +e.target.value });
$('sketch-cfg').oninput = (e) => { $('sketch-cfg-out').textContent = (+e.target.value).toFixed(1); };
$('sketch-cfg').onchange = (e) => send({ type: 'sketch_cfg', scale: +e.target.value });
$('control-guidance').oninput = (e) => { $('control-guidance-out').textContent = (+e.target.value).toFixed(2); };
$('control-guidance').onchange = (e) => send({ type: 'control_guidance', strength: +e.target.value });
$('prompt-guidance').oninput = (e) => { $('prompt-guidance-out').textContent = (+e.target.value).toFixed(2); };
$('prompt-guidance').onchange = (e) => send({ type: 'prompt_guidance', strength: +e.target.value });
$('bpm').onchange = (e) => send({ type: 'bpm', bpm: e.target.value === '' ? null : +e.target.value });
$('steps').onchange = (e) => send({ type: 'steps', steps: +e.target.value });
$('seed').onchange = (e) => send({ type: 'seed', seed: +e.target.value });
$('block').onchange = (e) => send({ type: 'block', frames: +e.target.value });
$('wet').onchange = (e) => send({ type: 'mix', dry: 1 - e.target.value, wet: +e.target.value });  // crossfade with the input
$('mode').onchange = (e) => {  // the input modes need the microphone: switch it on with them
  say(''); send({ type: 'mode', mode: e.target.value });
  if (e.target.value !== 'text' && !$('mic').checked) { $('mic').checked = true; toggleMic(true); }
};
$('add-form').onsubmit = (e) => {
  e.preventDefault(); const t = $('new-prompt').value.trim(); if (!t) return;
  prompts.push({ text: t, weight: 0.5 }); $('new-prompt').value = ''; renderPrompts(); send({ type: 'prompts', prompts });
};
renderPrompts();
connect();
