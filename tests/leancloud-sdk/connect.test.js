'use strict';
// Connecting: through the router and directly, signed and forged logins,
// several clients on one socket, base64 frames (noBinary), and the 4.3.1 SDK.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

/** a sends to b in a fresh unique conversation; b must receive the text. */
async function roundTrip(a, b, text) {
  const conv = await h.step(`${a.client.id} creates a conversation with ${b.client.id}`, () =>
    a.client.createConversation({ members: [b.client.id], name: `${a.client.id}&${b.client.id}` }),
  );
  assert.ok(conv.id, 'the conversation has an id');
  const got = h.nextMessage(b.client, conv.id, (m) => m.text === text);
  const sent = await h.step('send a text', () => conv.send(new a.sdk.TextMessage(text)));
  assert.ok(sent.id, 'the ack carries a message id');
  assert.ok(sent.timestamp instanceof Date && !Number.isNaN(sent.timestamp.getTime()), 'the ack carries a time');
  const { message } = await h.step(`${b.client.id} receives it`, () => got);
  assert.equal(message.from, a.client.id);
  assert.equal(message.id, sent.id);
  assert.equal(message.cid, conv.id);
  return { conv, sent, message };
}

test('signed login through the router (server: TIDINGS_HTTP, GET /v1/route)', async () => {
  const id = h.uid('router');
  const a = await h.step('login via router', () => h.login(id, { via: 'router' }));
  assert.equal(a.client.id, id);
  const b = await h.step('second client via router', () => h.login(h.uid('router-b'), { via: 'router' }));
  await roundTrip(a, b, 'hello through the router');
});

test('signed login directly (RTMServers: TIDINGS_WS)', async () => {
  const a = await h.step('login direct', () => h.login(h.uid('direct')));
  const b = await h.step('second client direct', () => h.login(h.uid('direct-b')));
  await roundTrip(a, b, 'hello direct');
  const online = await h.step('ping (session/query)', () => a.client.ping([b.client.id, h.uid('nobody')]));
  assert.deepEqual(online, [b.client.id]);
});

test('a forged login signature is refused with 4102', async () => {
  const id = h.uid('forged');
  const { realtime } = h.newRealtime();
  const err = await h.step('login with a forged signature', () =>
    h.failure(realtime.createIMClient(id, { signatureFactory: h.forgedLogin }), 'forged login'),
  );
  assert.equal(err.code, 4102, `expected SIGNATURE_FAILED, got ${err.code}: ${err.message}`);
  // The socket survives the refusal: the same Realtime then logs in properly.
  const ok = await h.step('a good login on the same Realtime', () =>
    realtime.createIMClient(h.uid('after-forged'), { signatureFactory: h.signLogin }),
  );
  h.track(ok);
  assert.ok(ok.id);
});

test('several clients on one socket (one Realtime, several createIMClient)', async () => {
  const { sdk, realtime } = h.newRealtime();
  const ids = [h.uid('multi-a'), h.uid('multi-b'), h.uid('multi-c')];
  const clients = [];
  for (const id of ids) {
    // eslint-disable-next-line no-await-in-loop
    clients.push(h.track(await h.step(`open ${id} on the shared socket`, () =>
      realtime.createIMClient(id, { signatureFactory: h.signLogin }))));
  }
  const [a, b, c] = clients;
  // Every push must reach the client named by its peerId, not the first one.
  const conv = await h.step('a creates a group with b and c', () =>
    a.createConversation({ members: [b.id, c.id], name: 'one socket', unique: false }),
  );
  const atB = h.nextMessage(b, conv.id, (m) => m.text === 'to all');
  const atC = h.nextMessage(c, conv.id, (m) => m.text === 'to all');
  const sent = await h.step('a sends', () => conv.send(new sdk.TextMessage('to all')));
  const [{ message: mb }, { message: mc }] = await h.step('b and c receive', () => Promise.all([atB, atC]));
  assert.equal(mb.id, sent.id);
  assert.equal(mc.id, sent.id);
  // b answers on the same socket; a (the first client, which omits peerId) gets it.
  const convAtB = await b.getConversation(conv.id);
  const atA = h.nextMessage(a, conv.id, (m) => m.text === 'from b');
  await h.step('b replies', () => convAtB.send(new sdk.TextMessage('from b')));
  const { message: ma } = await h.step('a receives the reply', () => atA);
  assert.equal(ma.from, b.id);
  // A forged login on the same socket is refused alone; the others stay.
  const err = await h.step('a forged login on the shared socket', () =>
    h.failure(realtime.createIMClient(h.uid('multi-forged'), { signatureFactory: h.forgedLogin }), 'forged'),
  );
  assert.equal(err.code, 4102);
  const atC2 = h.nextMessage(c, conv.id, (m) => m.text === 'still here');
  await h.step('a sends after the refusal', () => conv.send(new sdk.TextMessage('still here')));
  await h.step('c still receives', () => atC2);
});

test('noBinary: true (lc.proto2base64.3 text frames)', async () => {
  const a = await h.step('login with noBinary', () =>
    h.login(h.uid('base64'), { realtimeOptions: { noBinary: true } }),
  );
  const b = await h.step('a binary peer', () => h.login(h.uid('binary')));
  const first = await roundTrip(a, b, 'base64 to binary');
  // and back: the base64 client receives
  const conv = await h.step('b gets the conversation', () => b.client.getConversation(first.conv.id));
  assert.ok(conv, 'b finds the conversation by id');
  const got = h.nextMessage(a.client, conv.id, (m) => m.text === 'binary to base64');
  await h.step('binary peer replies', () => conv.send(new b.sdk.TextMessage('binary to base64')));
  const { message } = await h.step('base64 client receives', () => got);
  assert.equal(message.from, b.client.id);
});

test('leancloud-realtime 4.3.1 via RTMServers talks to 5.0.0-rc.8', async () => {
  const old = await h.step('4.3.1 login', () => h.login(h.uid('v4'), { version: 4 }));
  const cur = await h.step('5.0.0-rc.8 login', () => h.login(h.uid('v5')));
  await roundTrip(old, cur, 'from 4.3.1');
  await roundTrip(cur, old, 'from 5.0.0-rc.8');
});
