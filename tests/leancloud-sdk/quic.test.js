'use strict';
// One server, two doors: an SDK client and a QUIC client (tidings::client,
// driven by the Rust harness over TIDINGS_CONTROL) in one conversation.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

const text = (t) => JSON.stringify({ _lctype: -1, _lctext: t });

test('an SDK client and a QUIC client chat in one conversation', { skip: !h.hasControl() && 'needs tests/leancloud_sdk.rs' }, async () => {
  const a = await h.login(h.uid('sdk'));
  const q = h.uid('quic');
  await h.step('the harness logs a QUIC client in', () => h.ask('quic_login', { client: q }));

  const conv = await h.step('the SDK client creates a conversation with the QUIC client', () =>
    a.client.createConversation({ members: [q], name: 'two doors', unique: false }),
  );
  const delivered = h.once(conv, 'lastdeliveredatupdate');
  const sent = await h.step('the SDK client sends with a receipt', () =>
    conv.send(new a.sdk.TextMessage('hello quic').setMentionList([q]), { receipt: true }),
  );
  const got = await h.step('the QUIC client receives it', () => h.ask('quic_next_message', { client: q, conv: conv.id }));
  assert.equal(got.from, a.client.id);
  assert.equal(got.msgId, sent.id);
  assert.equal(JSON.parse(got.content)._lctext, 'hello quic', 'the SDK JSON reaches QUIC unchanged');
  assert.equal(got.mentioned, true, 'the mention crosses doors');
  await h.step('the QUIC client acked it: LAST_DELIVERED_AT_UPDATE on the SDK side', () => delivered);

  const atA = h.nextMessage(a.client, conv.id, (m) => m.text === 'hello sdk');
  const { msgId } = await h.step('the QUIC client sends', () =>
    h.ask('quic_send', { client: q, conv: conv.id, content: text('hello sdk') }),
  );
  const { message } = await h.step('the SDK client receives it', () => atA);
  assert.ok(message instanceof a.sdk.TextMessage);
  assert.equal(message.id, msgId);
  assert.equal(message.from, q);

  const recalled = h.once(a.client, 'messagerecall', { filter: (m) => m.id === msgId });
  await h.step('the QUIC client recalls it', () => h.ask('quic_recall', { client: q, conv: conv.id, msgId }));
  const [rm] = await h.step('the SDK client gets MESSAGE_RECALL', () => recalled);
  assert.ok(rm instanceof a.sdk.RecalledMessage);

  const invited = h.once(a.client, 'invited');
  const { conv: other } = await h.step('the QUIC client creates a conversation with the SDK client', () =>
    h.ask('quic_create', { client: q, members: [a.client.id], name: 'from quic' }),
  );
  const [payload, cv] = await h.step('the SDK client is INVITED', () => invited);
  assert.equal(cv.id, other);
  assert.equal(payload.invitedBy, q);
  assert.equal(cv.name, 'from quic');

  const history = await h.step('the SDK client reads the shared history', () => conv.queryMessages({ limit: 10 }));
  assert.deepEqual(history.map((m) => m.id), [sent.id, msgId]);
  assert.ok(history[1] instanceof a.sdk.RecalledMessage);
});
