// Microphone capture: collects 2048-sample mono chunks and hands them to the main thread,
// which frames them for the server (the accompaniment, sketch and generative-delay input).
class Mic extends AudioWorkletProcessor {
  constructor() { super(); this.buf = new Float32Array(2048); this.n = 0; }
  process(inputs) {
    const input = inputs[0][0];
    if (input) {
      for (let i = 0; i < input.length; i++) {
        this.buf[this.n++] = input[i];
        if (this.n === this.buf.length) { this.port.postMessage(this.buf.slice(0)); this.n = 0; }
      }
    }
    return true;
  }
}
registerProcessor('lmdm-mic', Mic);
