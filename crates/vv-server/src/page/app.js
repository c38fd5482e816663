// vibevoice-rt web page: voices from /v1/audio/voices, speech over the v1 WebSocket
// (/v1/tts/stream, pcm_f32le at 24 kHz), Web Audio playback scheduled frame by frame, live
// time to first audio and real-time factor. `?autotest=1` speaks at once and reports into #status.
'use strict';
(() => {
  const RATE = 24000;
  const HEADER = 16;
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const autotest = query.get('autotest') === '1';

  const st = {
    ws: null,
    connected: null,
    ready: null,
    nextId: 1,
    byId: new Map(),
    byNum: new Map(),
    dropped: new Set(),
    audio: null,
    playHead: 0,
    sources: new Set(),
    frames: 0,
  };

  function log(line) {
    const el = $('log');
    el.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
    el.scrollTop = el.scrollHeight;
  }

  function report(state, extra) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = JSON.stringify({ state, frames: st.frames, ...extra });
  }

  function key() {
    return $('apikey').value.trim();
  }

  async function loadVoices() {
    const headers = key() ? { Authorization: `Bearer ${key()}` } : {};
    const res = await fetch('/v1/audio/voices', { headers });
    if (!res.ok) throw new Error(`GET /v1/audio/voices: HTTP ${res.status}`);
    const body = await res.json();
    const select = $('voice');
    select.textContent = '';
    for (const v of body.data) {
      const opt = document.createElement('option');
      opt.value = v.id;
      opt.textContent = v.aliases && v.aliases.length ? `${v.id} (${v.aliases.join(', ')})` : v.id;
      opt.selected = v.id === body.default_voice;
      select.appendChild(opt);
    }
    return body.data.length;
  }

  function socketUrl() {
    const q = new URLSearchParams({ encoding: 'pcm_f32le', sample_rate: String(RATE) });
    if ($('voice').value) q.set('voice', $('voice').value);
    if (key()) q.set('api_key', key());
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/v1/tts/stream?${q}`;
  }

  // Opens a session (or reuses the open or opening one); resolves on session.ready.
  function connect() {
    const live = st.ws && (st.ws.readyState === WebSocket.OPEN || st.ws.readyState === WebSocket.CONNECTING);
    if (live && st.connected) return st.connected;
    st.connected = new Promise((resolve, reject) => {
      const ws = new WebSocket(socketUrl());
      ws.binaryType = 'arraybuffer';
      st.ws = ws;
      st.ready = null;
      ws.onmessage = (msg) => {
        if (typeof msg.data !== 'string') return onFrame(msg.data);
        const ev = JSON.parse(msg.data);
        if (ev.type === 'session.ready') {
          st.ready = ev;
          $('server').textContent = `${ev.model} on ${ev.device} (${ev.dtype})`;
          resolve(ev);
        }
        onEvent(ev);
      };
      ws.onerror = () => reject(new Error('the WebSocket failed (server down, busy or wrong API key?)'));
      ws.onclose = (e) => {
        log(`socket closed: ${e.code} ${e.reason}`);
        $('server').textContent = 'not connected';
        st.ready = null;
        if (autotest && $('status').dataset.state !== 'done') report('error', { error: `closed ${e.code}` });
      };
    });
    return st.connected;
  }

  function onEvent(ev) {
    const ctx = ev.context_id ? st.byId.get(ev.context_id) : null;
    switch (ev.type) {
      case 'context.created':
        if (ctx) {
          ctx.num = ev.context_num;
          st.byNum.set(ev.context_num, ctx);
        }
        break;
      case 'context.done':
        log(`done: ${ev.audio_ms} ms of audio, server TTFA ${ev.ttfa_ms} ms, RTF ${ev.rtf}`);
        if (ctx) finish(ctx, ev);
        break;
      case 'cancelled':
        log(`cancelled after ${ev.audio_sent_ms} ms of audio`);
        break;
      case 'warning':
        log(`warning ${ev.code}: ${ev.message}`);
        break;
      case 'error':
        log(`error ${ev.code}: ${ev.message}`);
        if (autotest) report('error', { error: ev.code });
        break;
      default:
        break;
    }
  }

  function ensureAudio() {
    if (!st.audio) {
      try {
        st.audio = new AudioContext({ sampleRate: RATE });
      } catch (_) {
        st.audio = new AudioContext();
      }
    }
    if (st.audio.state === 'suspended') st.audio.resume().catch(() => {});
    return st.audio;
  }

  function onFrame(buf) {
    if (buf.byteLength < HEADER) return;
    const dv = new DataView(buf);
    if (dv.getUint8(0) !== 1 || dv.getUint8(1) !== 1) return;
    const num = dv.getUint32(4, true);
    if (st.dropped.has(num)) return;
    const n = (buf.byteLength - HEADER) / 4;
    const samples = new Float32Array(n);
    for (let i = 0; i < n; i += 1) samples[i] = dv.getFloat32(HEADER + 4 * i, true);
    st.frames += 1;
    const ctx = st.byNum.get(num);
    if (ctx) {
      const now = performance.now();
      if (ctx.firstAudio === null) ctx.firstAudio = now;
      ctx.samples += n;
      $('ttfa').textContent = `${Math.round(ctx.firstAudio - ctx.sentAt)} ms`;
      if (ctx.samples > 0) $('rtf').textContent = ((now - ctx.sentAt) / 1000 / (ctx.samples / RATE)).toFixed(2);
      $('audio').textContent = `${(ctx.samples / RATE).toFixed(2)} s in ${st.frames} frames`;
    }
    if (n > 0) play(samples);
  }

  function play(samples) {
    const ac = ensureAudio();
    const buffer = ac.createBuffer(1, samples.length, RATE);
    buffer.copyToChannel(samples, 0);
    const src = ac.createBufferSource();
    src.buffer = buffer;
    src.connect(ac.destination);
    const at = Math.max(ac.currentTime + 0.05, st.playHead);
    src.start(at);
    st.playHead = at + buffer.duration;
    st.sources.add(src);
    src.onended = () => st.sources.delete(src);
  }

  function finish(ctx, ev) {
    st.byId.delete(ctx.id);
    if (!st.byId.size) $('cancel').disabled = true;
    if (autotest) {
      report('done', {
        context_num: ctx.num,
        samples: ctx.samples,
        ttfa_ms: ctx.firstAudio === null ? null : Math.round(ctx.firstAudio - ctx.sentAt),
        server_ttfa_ms: ev.ttfa_ms,
        audio_ms: ev.audio_ms,
        rtf: ev.rtf,
        voice: st.ready && st.ready.defaults.voice,
      });
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function speak() {
    const text = $('text').value;
    if (!text.trim()) return;
    ensureAudio();
    const ws = await connect().then(() => st.ws);
    const id = `ctx-${st.nextId}`;
    st.nextId += 1;
    const ctx = { id, num: null, sentAt: performance.now(), firstAudio: null, samples: 0 };
    st.byId.set(id, ctx);
    $('cancel').disabled = false;
    $('ttfa').textContent = '…';
    $('rtf').textContent = '…';
    if ($('stream').checked) {
      // Like an LLM: words as they come, then close.
      for (const piece of text.match(/\S+\s*/g) || []) {
        if (ws.readyState !== WebSocket.OPEN || !st.byId.has(id)) return;
        ws.send(JSON.stringify({ type: 'text', context_id: id, text: piece }));
        await sleep(40);
      }
    } else {
      ws.send(JSON.stringify({ type: 'text', context_id: id, text }));
    }
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'close', context_id: id }));
  }

  function cancel() {
    if (st.ws && st.ws.readyState === WebSocket.OPEN) st.ws.send(JSON.stringify({ type: 'cancel', context_id: '*' }));
    for (const ctx of st.byId.values()) if (ctx.num !== null) st.dropped.add(ctx.num);
    st.byId.clear();
    for (const src of st.sources) src.stop();
    st.sources.clear();
    st.playHead = 0;
    $('cancel').disabled = true;
  }

  $('speak').addEventListener('click', () => speak().catch((e) => log(String(e.message || e))));
  $('cancel').addEventListener('click', cancel);
  $('voice').addEventListener('change', () => { if (st.ws) st.ws.close(1000); });
  $('apikey').addEventListener('change', () => {
    if (st.ws) st.ws.close(1000);
    loadVoices().catch((e) => log(String(e.message || e)));
  });

  loadVoices()
    .then((n) => {
      log(`${n} voice(s) installed`);
      if (autotest) {
        report('running', {});
        return speak();
      }
      return undefined;
    })
    .catch((e) => {
      log(String(e.message || e));
      if (autotest) report('error', { error: String(e.message || e) });
    });
})();
