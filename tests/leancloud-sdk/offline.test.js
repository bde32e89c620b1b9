'use strict';
// Offline sync: a client that was away gets UNREAD_MESSAGES_COUNT_UPDATE at
// its next login (lc.protobuf2.3, pull), or the messages themselves with the
// 4.3.1 SDK's pushOfflineMessages (lc.protobuf2.1, push).

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('offline, then UNREAD_MESSAGES_COUNT_UPDATE at the next login', async () => {
  const a = await h.login(h.uid('oa'));
  const bId = h.uid('ob');
  const b = await h.login(bId);
  const conv = await h.step('a creates a conversation with b', () =>
    a.client.createConversation({ members: [bId], name: 'offline', unique: false }),
  );
  const first = h.nextMessage(b.client, conv.id, (m) => m.text === 'while online');
  await h.step('a sends while b is online', () => conv.send(new a.sdk.TextMessage('while online')));
  await h.step('b receives it (and acks)', () => first);
  const convAtB = await b.client.getConversation(conv.id);
  await h.step('b reads it', () => convAtB.read());

  await h.step('b closes its client', () => b.client.close());
  const sent1 = await h.step('a sends the first while b is away', () =>
    conv.send(new a.sdk.TextMessage('away 1')),
  );
  const sent2 = await h.step('a sends the second, mentioning b', () =>
    conv.send(new a.sdk.TextMessage('away 2').setMentionList([bId])),
  );
  assert.ok(sent2.timestamp.getTime() >= sent1.timestamp.getTime());

  const rec = h.recorder(['unreadmessagescountupdate']);
  const back = await h.step('b logs in again', () => h.login(bId, { realtimeOptions: { plugins: [rec.plugin] } }));
  const [convs] = await h.step('b gets UNREAD_MESSAGES_COUNT_UPDATE', () =>
    rec.wait('unreadmessagescountupdate', { filter: (cs) => cs.some((c) => c.id === conv.id) }),
  );
  const c = convs.find((x) => x.id === conv.id);
  assert.equal(c.unreadMessagesCount, 2, 'two messages arrived while b was away');
  assert.ok(c.lastMessage, 'the unread tuple carries the last message');
  assert.equal(c.lastMessage.text, 'away 2');
  assert.equal(c.lastMessage.id, sent2.id);
  assert.equal(c.lastMessage.from, a.client.id);
  assert.equal(c.unreadMessagesMentioned, true, 'the unread tuple says b was mentioned');

  const missed = await h.step('b pulls what it missed', () => c.queryMessages({ limit: 2 }));
  assert.deepEqual(missed.map((m) => m.id), [sent1.id, sent2.id]);

  await h.step('b reads', () => c.read());
  assert.equal(c.unreadMessagesCount, 0);
  // After reading, the next login reports nothing unread for it: a third
  // message makes the count 1, not 3.
  await h.step('b closes again', () => back.client.close());
  await h.step('a sends once more', () => conv.send(new a.sdk.TextMessage('away 3')));
  const rec2 = h.recorder(['unreadmessagescountupdate']);
  await h.step('b logs in once more', () => h.login(bId, { realtimeOptions: { plugins: [rec2.plugin] } }));
  const [convs2] = await h.step('b gets the new count', () =>
    rec2.wait('unreadmessagescountupdate', { filter: (cs) => cs.some((x) => x.id === conv.id) }),
  );
  assert.equal(convs2.find((x) => x.id === conv.id).unreadMessagesCount, 1);
});

test('4.3.1 with pushOfflineMessages (lc.protobuf2.1): missed messages are pushed', async () => {
  const a = await h.login(h.uid('pa'));
  const bId = h.uid('pb');
  const b = await h.step('b logs in with 4.3.1, pushOfflineMessages', () =>
    h.login(bId, { version: 4, realtimeOptions: { pushOfflineMessages: true } }),
  );
  const conv = await h.step('a creates a conversation with b', () =>
    a.client.createConversation({ members: [bId], unique: false }),
  );
  await h.step('b closes', () => b.client.close());
  const sent = await h.step('a sends while b is away', () => conv.send(new a.sdk.TextMessage('pushed later')));

  // Pushed messages follow session/opened: record from the client's creation.
  const rec = h.recorder(['message']);
  await h.step('b logs in again', () =>
    h.login(bId, { version: 4, realtimeOptions: { pushOfflineMessages: true, plugins: [rec.plugin] } }),
  );
  const [message] = await h.step('b receives the missed message', () =>
    rec.wait('message', { filter: (m, c) => c.id === conv.id && m.id === sent.id }),
  );
  assert.equal(message.text, 'pushed later');
  assert.equal(message.from, a.client.id);
});
