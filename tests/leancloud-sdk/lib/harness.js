'use strict';
// Shared helpers for the scenario files: where the server is (env), fresh SDK
// instances, signatures, bounded waits, and the control channel to the Rust
// harness (tests/leancloud_sdk.rs).
//
// Why a fresh SDK module per Realtime: leancloud-realtime 5 refuses a second
// `new Realtime` with the same appId in one process ("App [x] is already
// initialized", dist/es-latest/im-node.js `initializedApp`), and Tidings
// serves one app. Dropping the package's entries from require.cache gives a
// new module instance with its own registry, so one test process can hold
// several sockets (a conflict needs two). Classes (TextMessage, TypedMessage…)
// must come from the same instance as the Realtime that uses them
// (`message instanceof Message` in Conversation#send), so `newRealtime`
// returns the module beside the Realtime.

const crypto = require('node:crypto');
const net = require('node:net');
const path = require('node:path');

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set: run this file through tests/leancloud_sdk.rs, or set ` +
        'TIDINGS_WS, TIDINGS_HTTP, TIDINGS_APP_ID, TIDINGS_MASTER_KEY and TIDINGS_APP_KEY by hand',
    );
  }
  return v;
}

const env = {
  get ws() {
    return need('TIDINGS_WS');
  },
  get http() {
    return need('TIDINGS_HTTP').replace(/\/+$/, '');
  },
  get appId() {
    return need('TIDINGS_APP_ID');
  },
  get masterKey() {
    return need('TIDINGS_MASTER_KEY');
  },
  get appKey() {
    return process.env.TIDINGS_APP_KEY || 'tidings-no-app-key';
  },
};

/** One-line progress note on stderr, next to the SDK's debug log. */
function log(...parts) {
  process.stderr.write(`[scenario ${new Date().toISOString()}] ${parts.join(' ')}\n`);
}

/**
 * Runs one named step; a failure names the step, so the Rust harness's output
 * says where a scenario stopped, not only which assertion.
 */
async function step(name, fn) {
  log('step:', name);
  try {
    return await fn();
  } catch (e) {
    const msg = e && e.message ? e.message : String(e);
    const code = e && e.code !== undefined ? ` (code ${e.code})` : '';
    if (e && typeof e === 'object') {
      try {
        e.message = `step "${name}" failed: ${msg}${code}`;
      } catch (_) {
        /* frozen error: rethrow as is */
      }
    }
    log('FAILED step:', name, '-', msg + code);
    throw e;
  }
}

let seq = 0;
/** A client id unique to this process run (tests in one file share a server). */
function uid(prefix) {
  seq += 1;
  return `${prefix}-${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}${seq}`;
}

const hmac = (msg) => crypto.createHmac('sha1', env.masterKey).update(msg).digest('hex');
const nonce = () => crypto.randomBytes(8).toString('hex');
const nowSecs = () => Math.floor(Date.now() / 1000);

/** The login signature LeanCloud documents: appid:clientid::ts:nonce (seconds here). */
function signLogin(clientId) {
  const timestamp = nowSecs();
  const n = nonce();
  return { signature: hmac(`${env.appId}:${clientId}::${timestamp}:${n}`), timestamp, nonce: n };
}

/** A login signature made with the wrong key: the server must refuse it (4102). */
function forgedLogin(clientId) {
  const timestamp = nowSecs();
  const n = nonce();
  const signature = crypto
    .createHmac('sha1', 'not-the-master-key')
    .update(`${env.appId}:${clientId}::${timestamp}:${n}`)
    .digest('hex');
  return { signature, timestamp, nonce: n };
}

/**
 * conversationSignatureFactory(conversationId, clientId, sortedMembers, action):
 * create signs appid:clientid:sorted_members:ts:nonce; invite/kick sign
 * appid:clientid:convid:sorted_members:ts:nonce:action.
 */
function signConversation(conversationId, clientId, members, action) {
  const timestamp = nowSecs();
  const n = nonce();
  const sorted = [...members].sort().join(':');
  const msg =
    action === 'create'
      ? `${env.appId}:${clientId}:${sorted}:${timestamp}:${n}`
      : `${env.appId}:${clientId}:${conversationId}:${sorted}:${timestamp}:${n}:${action}`;
  return { signature: hmac(msg), timestamp, nonce: n };
}

/** blacklistSignatureFactory: …:convid:sorted_members:ts:nonce:conversation-(un)block-clients. */
function signBlacklist(conversationId, clientId, members, action) {
  const timestamp = nowSecs();
  const n = nonce();
  const sorted = [...members].sort().join(':');
  const msg = `${env.appId}:${clientId}:${conversationId}:${sorted}:${timestamp}:${n}:${action}`;
  return { signature: hmac(msg), timestamp, nonce: n };
}

const PACKAGES = { 5: 'leancloud-realtime', 4: 'leancloud-realtime-4' };

/** A new instance of the SDK module (see the top of this file for why). */
function freshSdk(version = 5) {
  const name = PACKAGES[version];
  if (!name) throw new Error(`no SDK version ${version}`);
  const marker = `${path.sep}node_modules${path.sep}${name}${path.sep}`;
  for (const key of Object.keys(require.cache)) {
    if (key.includes(marker)) delete require.cache[key];
  }
  return require(name);
}

const opened = [];

/**
 * A Realtime on a fresh SDK module.
 *   via: 'router' (server: TIDINGS_HTTP, so GET /v1/route) or 'direct' (RTMServers: TIDINGS_WS)
 *   version: 5 (5.0.0-rc.8) or 4 (4.3.1; always direct: 4.x forces https for its router)
 * Other options go to the Realtime constructor (noBinary, pushOfflineMessages…).
 */
function newRealtime({ via = 'direct', version = 5, ...options } = {}) {
  const sdk = freshSdk(version);
  const opts = { appId: env.appId, appKey: env.appKey, ...options };
  let ws = env.ws;
  if (via === 'droppable') {
    // A TCP relay in the Rust harness in front of the door: ask('drop_ws')
    // cuts every connection through it, as a server or network drop would.
    ws = process.env.TIDINGS_WS_DROPPABLE;
    if (!ws) throw new Error('TIDINGS_WS_DROPPABLE is not set: this scenario needs tests/leancloud_sdk.rs');
  }
  if (version === 4) {
    // 4.x builds https://{server}/… for the router and REST; RTMServers skips
    // the router, and REST is only used on reconnect (a warning when it fails).
    opts.server = opts.server || env.http.replace(/^https?:\/\//, '');
    opts.RTMServers = ws;
  } else {
    opts.server = env.http;
    if (via === 'direct' || via === 'droppable') opts.RTMServers = ws;
    else if (via !== 'router') throw new Error(`via must be 'router', 'direct' or 'droppable', not ${via}`);
  }
  const realtime = new sdk.Realtime(opts);
  return { sdk, realtime };
}

/** A signed client on its own new socket: { sdk, realtime, client }. */
async function login(clientId, { via, version, realtimeOptions = {}, ...clientOptions } = {}) {
  const { sdk, realtime } = newRealtime({ via, version, ...realtimeOptions });
  const client = await realtime.createIMClient(clientId, { signatureFactory: signLogin, ...clientOptions });
  opened.push(client);
  return { sdk, realtime, client };
}

/** Remembers a client created another way, so closeAll closes it. */
function track(client) {
  opened.push(client);
  return client;
}

/** Closes every client this process opened (best effort, bounded). */
async function closeAll() {
  const clients = opened.splice(0);
  await Promise.all(
    clients.map((c) =>
      withTimeout(Promise.resolve().then(() => c.close()), 5000, `close ${c.id}`).catch((e) =>
        log('close failed (ignored):', c.id, e.message),
      ),
    ),
  );
  if (control) control.end();
}

/** `promise`, or a rejection naming `what` after `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const WAIT = Number(process.env.TIDINGS_SDK_WAIT_MS || 10000);

/**
 * The arguments of the next `event` on `emitter` for which `filter(...args)`
 * holds (default: any), or a rejection after `ms`.
 */
function once(emitter, event, { filter = () => true, ms = WAIT } = {}) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => {
      let ok = false;
      try {
        ok = filter(...args);
      } catch (e) {
        ok = false;
      }
      if (ok) resolve(args);
    };
    emitter.on(event, handler);
  });
  const who = emitter.id ? ` on ${emitter.id}` : '';
  return withTimeout(p, ms, `event "${event}"${who}`).finally(() => emitter.off(event, handler));
}

/**
 * Records `events` on every IMClient of a Realtime from its construction
 * (the SDK's `onIMClientCreate` plugin hook), so pushes that follow
 * session/opened (unread counts, offline messages) cannot slip past a
 * listener attached after createIMClient resolves. Pass `plugin` in the
 * Realtime's `plugins`; `wait(event, {filter, ms})` looks at what was
 * recorded, then waits.
 */
function recorder(events) {
  const { EventEmitter } = require('node:events');
  const seen = [];
  const ee = new EventEmitter();
  const plugin = {
    name: 'tidings-test-recorder',
    onIMClientCreate: (client) => {
      for (const event of events) {
        client.on(event, (...args) => {
          seen.push({ event, args });
          ee.emit(event, ...args);
        });
      }
    },
  };
  return {
    plugin,
    seen,
    wait(event, { filter = () => true, ms = WAIT } = {}) {
      const hit = seen.find((s) => s.event === event && filter(...s.args));
      if (hit) return Promise.resolve(hit.args);
      return once(ee, event, { filter, ms });
    },
  };
}

/** A MESSAGE on `client` in conversation `cid` matching `filter(message)`. */
function nextMessage(client, cid, filter = () => true, ms = WAIT) {
  return once(client, 'message', { filter: (m, c) => c.id === cid && filter(m), ms }).then(
    ([m, c]) => ({ message: m, conversation: c }),
  );
}

/**
 * Polls `f` (every 100 ms, at most `ms`) for server state that has no event;
 * `f` returns true when done, anything else is reported on timeout.
 */
async function eventually(what, f, ms = WAIT) {
  const deadline = Date.now() + ms;
  for (;;) {
    // eslint-disable-next-line no-await-in-loop
    const last = await f();
    if (last === true) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${safeJson(last)})`);
    // eslint-disable-next-line no-await-in-loop
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The error a call must fail with; asserts it fails. */
async function failure(promise, what) {
  try {
    const v = await promise;
    throw Object.assign(new Error(`${what}: expected a failure, got ${safeJson(v)}`), { unexpected: true });
  } catch (e) {
    if (e.unexpected) throw e;
    return e;
  }
}

function safeJson(v) {
  try {
    return JSON.stringify(v);
  } catch (_) {
    return String(v);
  }
}

// ---- control channel to the Rust harness -------------------------------
//
// TIDINGS_CONTROL=127.0.0.1:PORT: a TCP socket speaking JSON lines. Each
// request {"op": …, …} gets one answer {"ok": true, …} or {"ok": false,
// "error": …}. The harness, not node, can restart the server, call the admin
// API and drive a QUIC client. (node --test runs each file in a child whose
// stdin is not ours, so stdin/stdout lines would not reach it.)

let control = null;
let controlBuf = '';
const controlWaiters = [];

function hasControl() {
  return Boolean(process.env.TIDINGS_CONTROL);
}

function connectControl() {
  if (control) return Promise.resolve(control);
  const addr = process.env.TIDINGS_CONTROL;
  if (!addr) throw new Error('TIDINGS_CONTROL is not set: this scenario needs tests/leancloud_sdk.rs');
  const i = addr.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) }, () => resolve(s));
    s.setEncoding('utf8');
    s.on('error', (e) => {
      reject(e);
      while (controlWaiters.length) controlWaiters.shift().reject(e);
    });
    s.on('data', (chunk) => {
      controlBuf += chunk;
      let nl;
      while ((nl = controlBuf.indexOf('\n')) >= 0) {
        const line = controlBuf.slice(0, nl);
        controlBuf = controlBuf.slice(nl + 1);
        const w = controlWaiters.shift();
        if (!w) {
          log('unexpected control line:', line);
          continue;
        }
        try {
          w.resolve(JSON.parse(line));
        } catch (e) {
          w.reject(new Error(`bad control answer ${line}: ${e.message}`));
        }
      }
    });
    s.unref();
    control = s;
  });
}

/** Asks the Rust harness to do `op`; its answer (throws on {"ok": false}). */
async function ask(op, args = {}, ms = 30000) {
  const s = await connectControl();
  const answer = new Promise((resolve, reject) => controlWaiters.push({ resolve, reject }));
  log('control ->', op, safeJson(args));
  s.write(`${JSON.stringify({ op, ...args })}\n`);
  const a = await withTimeout(answer, ms, `control answer to ${op}`);
  log('control <-', safeJson(a));
  if (!a.ok) throw new Error(`control ${op} failed: ${a.error}`);
  return a;
}

module.exports = {
  env,
  log,
  step,
  uid,
  signLogin,
  forgedLogin,
  signConversation,
  signBlacklist,
  freshSdk,
  newRealtime,
  login,
  track,
  closeAll,
  once,
  recorder,
  nextMessage,
  withTimeout,
  eventually,
  failure,
  hasControl,
  ask,
  WAIT,
};
