'use strict';
// Sessions: CONFLICT on a second login with the same tag, a reconnect login
// refused while another device holds the tag, reconnect after the socket is
// dropped, and a kick through the admin API.
//
// All but the first need the Rust harness (TIDINGS_CONTROL,
// TIDINGS_WS_DROPPABLE); they are skipped, with a note, when run by hand
// without it.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('CONFLICT on a second login with the same tag', async () => {
  const id = h.uid('tag');
  const first = await h.step('first device logs in with tag Mobile', () => h.login(id, { tag: 'Mobile' }));
  const conflict = h.once(first.client, 'conflict');
  const second = await h.step('second device logs in with tag Mobile', () => h.login(id, { tag: 'Mobile' }));
  const [payload] = await h.step('the first gets CONFLICT', () => conflict);
  assert.equal(typeof payload.reason, 'string', 'CONFLICT carries a reason');

  // The newcomer holds the session: it receives, the old one does not.
  const peer = await h.login(h.uid('tag-peer'));
  const conv = await h.step('a peer creates a conversation with the user', () =>
    peer.client.createConversation({ members: [id], unique: false }),
  );
  const got = h.nextMessage(second.client, conv.id, (m) => m.text === 'to the newcomer');
  await h.step('the peer sends', () => conv.send(new peer.sdk.TextMessage('to the newcomer')));
  await h.step('the second device receives', () => got);

  // Another tag is not a conflict.
  const noConflict = await h.step('a third device with tag Web', () => h.login(id, { tag: 'Web' }));
  const both = Promise.all([
    h.nextMessage(second.client, conv.id, (m) => m.text === 'to both'),
    h.nextMessage(noConflict.client, conv.id, (m) => m.text === 'to both'),
  ]);
  await h.step('the peer sends again', () => conv.send(new peer.sdk.TextMessage('to both')));
  await h.step('Mobile and Web both receive', () => both);
});

// The SDK makes a reconnect login (session/open with r = true and its
// session token) only on its own, after a dropped socket: createIMClient(id,
// {isReconnect: true}) on a new client throws a TypeError in both 4.3.1 and
// 5.0.0-rc.8 before sending anything (IMClient#_open reads
// this._sessionManager, which only a first login creates). So: b holds the
// tag, its socket is cut, b is paused, c logs in actively with the same
// tag, and b's resumed reconnect must be refused with 4111 while c stays.
test('a reconnect login (r = true) is refused while another device holds the tag', { skip: !h.hasControl() && 'needs tests/leancloud_sdk.rs' }, async () => {
  const id = h.uid('holder');
  const b = await h.step('b logs in with tag Mobile through the relay', () =>
    h.login(id, { tag: 'Mobile', via: 'droppable' }),
  );
  const disconnected = h.once(b.realtime, 'disconnect');
  await h.step('the harness drops b\'s socket', () => h.ask('drop_ws'));
  await h.step('b sees DISCONNECT', () => disconnected);
  b.realtime.pause(); // no retry until resume (the first is 1 s away)

  const c = await h.step('c logs in actively with tag Mobile', () => h.login(id, { tag: 'Mobile' }));
  const refused = h.once(b.client, 'reconnecterror', { ms: 30000 });
  const wrongly = h.once(b.client, 'reconnect', { ms: 30000 }).then(() => {
    throw new Error('the reconnect login was accepted while c holds the tag');
  });
  wrongly.catch(() => {});
  b.realtime.resume();
  const [err] = await h.step('b\'s reconnect login is refused', () => Promise.race([refused, wrongly]));
  assert.equal(err.code, 4111, `SESSION_CONFLICT, got ${err.code}: ${err.message}`);

  const peer = await h.login(h.uid('holder-peer'));
  const conv = await peer.client.createConversation({ members: [id], unique: false });
  const got = h.nextMessage(c.client, conv.id, (m) => m.text === 'still yours');
  await h.step('a peer sends', () => conv.send(new peer.sdk.TextMessage('still yours')));
  await h.step('c, the holder, still receives', () => got);
});

test('reconnect after the socket is dropped (DISCONNECT, then RECONNECT)', { skip: !h.hasControl() && 'needs tests/leancloud_sdk.rs' }, async () => {
  const a = await h.login(h.uid('steady'));
  const bId = h.uid('dropped');
  const b = await h.step('b logs in through the droppable relay', () => h.login(bId, { via: 'droppable' }));
  const conv = await a.client.createConversation({ members: [bId], unique: false });
  const first = h.nextMessage(b.client, conv.id, (m) => m.text === 'before');
  await conv.send(new a.sdk.TextMessage('before'));
  await h.step('b receives before the drop', () => first);

  const disconnected = h.once(b.realtime, 'disconnect');
  const reconnected = h.once(b.client, 'reconnect', { ms: 30000 });
  const failed = h.once(b.client, 'reconnecterror', { ms: 30000 }).then(([e]) => {
    throw new Error(`RECONNECT_ERROR: ${e && e.message} (code ${e && e.code})`);
  });
  failed.catch(() => {});
  await h.step('the harness drops every relayed socket', () => h.ask('drop_ws'));
  await h.step('b sees DISCONNECT', () => disconnected);
  await h.step('b logs back in by itself (session token, r = true)', () => Promise.race([reconnected, failed]));

  const after1 = h.nextMessage(b.client, conv.id, (m) => m.text === 'after');
  await h.step('a sends after the reconnect', () => conv.send(new a.sdk.TextMessage('after')));
  await h.step('b receives it', () => after1);
  const convAtB = await b.client.getConversation(conv.id);
  const atA = h.nextMessage(a.client, conv.id, (m) => m.text === 'back');
  await h.step('b sends after the reconnect', () => convAtB.send(new b.sdk.TextMessage('back')));
  await h.step('a receives it', () => atA);
});

test('a kick through the admin API closes the session with 4115', { skip: !h.hasControl() && 'needs tests/leancloud_sdk.rs' }, async () => {
  const a = await h.login(h.uid('watcher'));
  const bId = h.uid('kicked');
  const b = await h.login(bId);
  assert.deepEqual(await a.client.ping([bId]), [bId]);
  const closed = h.once(b.client, 'close');
  await h.step('the harness kicks b', () => h.ask('kick', { client: bId, reason: 'go away' }));
  const [payload] = await h.step('b gets CLOSE', () => closed);
  assert.equal(payload.code, 4115, `KICKED_BY_APP, got ${JSON.stringify(payload)}`);
  assert.equal(payload.reason, 'go away');
  await h.step('b is offline after the kick', () =>
    h.eventually('b offline', async () => {
      const online = await a.client.ping([bId]);
      return online.length === 0 ? true : online;
    }),
  );
});
