'use strict';
// Chat rooms (transient conversations): create, join, message, count, quit.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('chat room: createChatRoom, join, message, count, quit', async () => {
  const a = await h.login(h.uid('ra'));
  const b = await h.login(h.uid('rb'));
  const c = await h.login(h.uid('rc'));
  const room = await h.step('a creates a chat room', () => a.client.createChatRoom({ name: 'lobby' }));
  assert.ok(room instanceof a.sdk.ChatRoom, 'a ChatRoom');
  assert.equal(room.transient, true);

  const roomAtB = await h.step('b finds it by id', () => b.client.getConversation(room.id));
  assert.ok(roomAtB instanceof b.sdk.ChatRoom, 'the conv/query row says tr: true');
  await h.step('b joins', () => roomAtB.join());
  const roomAtC = await h.step('c finds it', () => c.client.getConversation(room.id));
  await h.step('c joins', () => roomAtC.join());

  const found = await h.step('getChatRoomQuery finds it', () =>
    b.client.getChatRoomQuery().equalTo('objectId', room.id).find(),
  );
  assert.deepEqual(found.map((x) => x.id), [room.id]);
  assert.ok(found[0] instanceof b.sdk.ChatRoom);

  const atB = h.nextMessage(b.client, room.id, (m) => m.text === 'hi room');
  const atC = h.nextMessage(c.client, room.id, (m) => m.text === 'hi room');
  const sent = await h.step('a sends in the room (the ack must come for transient too)', () =>
    room.send(new a.sdk.TextMessage('hi room'), { priority: a.sdk.MessagePriority.HIGH }),
  );
  assert.ok(sent.id);
  const [{ message: mb }] = await h.step('b and c receive', () => Promise.all([atB, atC]));
  assert.equal(mb.id, sent.id);
  assert.equal(mb.from, a.client.id);

  const atA = h.nextMessage(a.client, room.id, (m) => m.text === 'hi from b');
  await h.step('b sends', () => roomAtB.send(new b.sdk.TextMessage('hi from b')));
  await h.step('a receives', () => atA);

  assert.equal(await h.step('count with three in the room', () => room.count()), 3);
  await h.step('c quits', () => roomAtC.quit());
  await h.step('count drops to two', () =>
    h.eventually('count 2', async () => {
      const n = await room.count();
      return n === 2 ? true : `count ${n}`;
    }),
  );
  const notAtC = h.nextMessage(a.client, room.id, (m) => m.text === 'c is gone');
  await h.step('b sends after c left', () => roomAtB.send(new b.sdk.TextMessage('c is gone')));
  await h.step('a still receives', () => notAtC);
});

test('a transient message in a normal conversation is delivered, not stored', async () => {
  const a = await h.login(h.uid('ta'));
  const b = await h.login(h.uid('tb'));
  const conv = await a.client.createConversation({ members: [b.client.id], unique: false });
  const got = h.nextMessage(b.client, conv.id, (m) => m.text === 'typing…');
  const sent = await h.step('a sends transiently', () =>
    conv.send(new a.sdk.TextMessage('typing…'), { transient: true }),
  );
  assert.ok(sent.id, 'transient messages are acked too (configBitmap transient-msg-ack)');
  await h.step('b receives it', () => got);
  await h.step('a sends a normal one', () => conv.send(new a.sdk.TextMessage('stored')));
  const hist = await h.step('history', () => conv.queryMessages({ limit: 10 }));
  assert.deepEqual(hist.map((m) => m.text), ['stored'], 'the transient message is not in history');
});
