'use strict';
// Messages: text, a custom TypedMessage subclass, mentions, delivery and read
// receipts, edit and recall, and history in both directions.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

const POKE = 7;

/**
 * A custom typed message, defined on one SDK module instance. Decorators are
 * Babel-only, so the SDK's decorator functions are applied by hand, as its
 * docs show for plain JS.
 */
function definePoke(sdk) {
  class Poke extends sdk.TypedMessage {}
  sdk.messageType(POKE)(Poke);
  sdk.messageField(['strength', 'target'])(Poke);
  return Poke;
}

async function pair(prefix) {
  const a = await h.login(h.uid(`${prefix}a`));
  const b = await h.login(h.uid(`${prefix}b`));
  const conv = await h.step('a creates a 1:1 conversation with b', () =>
    a.client.createConversation({ members: [b.client.id], name: prefix, unique: false }),
  );
  const convAtB = await h.step('b gets it', () => b.client.getConversation(conv.id));
  assert.ok(convAtB);
  return { a, b, conv, convAtB };
}

test('text and a custom TypedMessage (realtime.register)', async () => {
  const { a, b, conv } = await pair('typed');
  const PokeA = definePoke(a.sdk);
  const PokeB = definePoke(b.sdk);
  a.realtime.register(PokeA);
  b.realtime.register(PokeB);

  const gotText = h.nextMessage(b.client, conv.id, (m) => m.text === 'plain text');
  const sentText = await h.step('a sends a TextMessage', () => conv.send(new a.sdk.TextMessage('plain text')));
  const { message: text } = await h.step('b receives it', () => gotText);
  assert.ok(text instanceof b.sdk.TextMessage);
  assert.equal(text.type, -1);
  assert.equal(text.id, sentText.id);
  assert.equal(text.timestamp.getTime(), sentText.timestamp.getTime());

  const poke = new PokeA();
  poke.strength = 3;
  poke.target = 'nose';
  poke.setText('poke!');
  poke.setAttributes({ colour: 'red' });
  const gotPoke = h.nextMessage(b.client, conv.id, (m) => m.type === POKE);
  const sentPoke = await h.step('a sends a Poke', () => conv.send(poke));
  const { message: p } = await h.step('b receives the Poke', () => gotPoke);
  assert.ok(p instanceof PokeB, 'b parsed it as its registered class');
  assert.equal(p.id, sentPoke.id);
  assert.equal(p.strength, 3);
  assert.equal(p.target, 'nose');
  assert.equal(p.getText(), 'poke!');
  assert.deepEqual(p.getAttributes(), { colour: 'red' });

  const history = await h.step('history returns both', () => conv.queryMessages({ limit: 10 }));
  assert.deepEqual(history.map((m) => m.id), [sentText.id, sentPoke.id]);
  assert.ok(history[1] instanceof PokeA);
  assert.equal(history[1].strength, 3);
  const onlyPokes = await h.step('history filtered by type', () => conv.queryMessages({ limit: 10, type: POKE }));
  assert.deepEqual(onlyPokes.map((m) => m.id), [sentPoke.id]);
});

test('mentions: setMentionList and mentionAll set message.mentioned', async () => {
  const a = await h.login(h.uid('ma'));
  const b = await h.login(h.uid('mb'));
  const c = await h.login(h.uid('mc'));
  const conv = await h.step('a creates a group', () =>
    a.client.createConversation({ members: [b.client.id, c.client.id], unique: false }),
  );
  const atB = h.nextMessage(b.client, conv.id, (m) => m.text === 'hey b');
  const atC = h.nextMessage(c.client, conv.id, (m) => m.text === 'hey b');
  await h.step('a mentions b', () =>
    conv.send(new a.sdk.TextMessage('hey b').setMentionList([b.client.id])),
  );
  const [{ message: mb }, { message: mc }] = await h.step('b and c receive', () => Promise.all([atB, atC]));
  assert.equal(mb.mentioned, true, 'b is mentioned');
  assert.deepEqual(mb.mentionList, [b.client.id]);
  assert.ok(!mb.mentionedAll, 'not mentionAll');
  assert.equal(mc.mentioned, false, 'c is not');

  const allB = h.nextMessage(b.client, conv.id, (m) => m.text === 'everyone');
  const allC = h.nextMessage(c.client, conv.id, (m) => m.text === 'everyone');
  await h.step('a mentions all', () => conv.send(new a.sdk.TextMessage('everyone').mentionAll()));
  const [{ message: ab }, { message: ac }] = await h.step('b and c receive', () => Promise.all([allB, allC]));
  assert.equal(ab.mentionedAll, true);
  assert.equal(ab.mentioned, true);
  assert.equal(ac.mentioned, true);

  const hist = await h.step('history keeps the mentions', () => conv.queryMessages({ limit: 2 }));
  assert.deepEqual(hist[0].mentionList, [b.client.id]);
  assert.equal(hist[1].mentionedAll, true);
});

test('delivery receipt (receipt: true) and read receipt (conversation.read())', async () => {
  const { a, b, conv, convAtB } = await pair('rcp');
  const delivered = h.once(conv, 'lastdeliveredatupdate');
  const got = h.nextMessage(b.client, conv.id, (m) => m.text === 'tell me');
  const sent = await h.step('a sends with receipt: true', () =>
    conv.send(new a.sdk.TextMessage('tell me'), { receipt: true }),
  );
  await h.step('b receives (and acks it)', () => got);
  await h.step('a gets LAST_DELIVERED_AT_UPDATE', () => delivered);
  assert.ok(conv.lastDeliveredAt instanceof Date, 'lastDeliveredAt is set');
  assert.ok(conv.lastDeliveredAt.getTime() >= sent.timestamp.getTime(), 'delivered at or after sending');
  assert.equal(sent.status, a.sdk.MessageStatus.DELIVERED, 'the message waiting for its receipt is DELIVERED');

  const read = h.once(conv, 'lastreadatupdate');
  await h.step('b reads the conversation', () => convAtB.read());
  assert.equal(convAtB.unreadMessagesCount, 0);
  await h.step('a gets LAST_READ_AT_UPDATE', () => read);
  assert.ok(conv.lastReadAt instanceof Date, 'lastReadAt is set');
  assert.ok(conv.lastReadAt.getTime() >= sent.timestamp.getTime());

  // conv/max_read answers the same timestamps to a fresh copy on a new socket
  const again = await h.login(a.client.id);
  const copy = await h.step('a, on a second device, reads the conversation', () => again.client.getConversation(conv.id));
  await h.step('fetchReceiptTimestamps (conv/max_read)', () => copy.fetchReceiptTimestamps());
  assert.ok(copy.lastDeliveredAt instanceof Date, 'max_read answers maxAckTimestamp');
  assert.ok(copy.lastReadAt instanceof Date, 'max_read answers maxReadTimestamp');
  assert.ok(copy.lastReadAt.getTime() >= sent.timestamp.getTime());
});

test('edit (MESSAGE_UPDATE) and recall (MESSAGE_RECALL)', async () => {
  const { a, b, conv } = await pair('patch');
  const got = h.nextMessage(b.client, conv.id, (m) => m.text === 'tpyo');
  const sent = await h.step('a sends', () => conv.send(new a.sdk.TextMessage('tpyo')));
  await h.step('b receives', () => got);

  const updated = h.once(b.client, 'messageupdate', { filter: (m) => m.id === sent.id });
  const edited = await h.step('a edits it', () => conv.update(sent, new a.sdk.TextMessage('typo')));
  assert.equal(edited.id, sent.id);
  const [um, uconv] = await h.step('b gets MESSAGE_UPDATE', () => updated);
  assert.equal(um.text, 'typo');
  assert.equal(um.from, a.client.id);
  assert.equal(uconv.id, conv.id);
  assert.ok(um.updatedAt, 'the patch carries patchTimestamp');

  const recalled = h.once(b.client, 'messagerecall', { filter: (m) => m.id === sent.id });
  const r = await h.step('a recalls it', () => conv.recall(edited));
  assert.ok(r instanceof a.sdk.RecalledMessage);
  const [rm, rconv] = await h.step('b gets MESSAGE_RECALL', () => recalled);
  assert.ok(rm instanceof b.sdk.RecalledMessage, 'b sees a RecalledMessage');
  assert.equal(rconv.id, conv.id);

  const hist = await h.step('history shows the recall', () => conv.queryMessages({ limit: 1 }));
  assert.equal(hist[0].id, sent.id);
  assert.ok(hist[0] instanceof a.sdk.RecalledMessage);
});

test('history: limit, start anchors, both directions', async () => {
  const { a, conv } = await pair('hist');
  const sent = [];
  for (let i = 1; i <= 5; i += 1) {
    // eslint-disable-next-line no-await-in-loop
    sent.push(await h.step(`send m${i}`, () => conv.send(new a.sdk.TextMessage(`m${i}`))));
  }
  const texts = (ms) => ms.map((m) => m.text);

  const latest = await h.step('limit 3 (newest, oldest first)', () => conv.queryMessages({ limit: 3 }));
  assert.deepEqual(texts(latest), ['m3', 'm4', 'm5']);
  assert.equal(latest[0].id, sent[2].id);
  assert.equal(latest[0].from, a.client.id);

  const before = await h.step('before m3 (startTime + startMessageId)', () =>
    conv.queryMessages({ limit: 10, startTime: sent[2].timestamp, startMessageId: sent[2].id }),
  );
  assert.deepEqual(texts(before), ['m1', 'm2']);
  const beforeOld = await h.step('before m3 (deprecated beforeTime + beforeMessageId)', () =>
    conv.queryMessages({ limit: 10, beforeTime: sent[2].timestamp, beforeMessageId: sent[2].id }),
  );
  assert.deepEqual(texts(beforeOld), ['m1', 'm2']);

  const newer = await h.step('OLD_TO_NEW after m2, limit 2', () =>
    conv.queryMessages({
      limit: 2,
      direction: a.sdk.MessageQueryDirection.OLD_TO_NEW,
      startTime: sent[1].timestamp,
      startMessageId: sent[1].id,
    }),
  );
  assert.deepEqual(texts(newer), ['m3', 'm4']);
  const older = await h.step('NEW_TO_OLD before m4, limit 2', () =>
    conv.queryMessages({
      limit: 2,
      direction: a.sdk.MessageQueryDirection.NEW_TO_OLD,
      startTime: sent[3].timestamp,
      startMessageId: sent[3].id,
    }),
  );
  assert.deepEqual(texts(older), ['m2', 'm3']);
  const closed = await h.step('OLD_TO_NEW from m2 inclusive (startClosed)', () =>
    conv.queryMessages({
      limit: 2,
      direction: a.sdk.MessageQueryDirection.OLD_TO_NEW,
      startTime: sent[1].timestamp,
      startMessageId: sent[1].id,
      startClosed: true,
    }),
  );
  assert.deepEqual(texts(closed), ['m2', 'm3']);
  const range = await h.step('between m1 and m5 (endTime + endMessageId)', () =>
    conv.queryMessages({
      startTime: sent[0].timestamp,
      startMessageId: sent[0].id,
      endTime: sent[4].timestamp,
      endMessageId: sent[4].id,
    }),
  );
  assert.deepEqual(texts(range), ['m2', 'm3', 'm4']);

  const it = conv.createMessagesIterator({ limit: 2 });
  const pages = [];
  for (;;) {
    // eslint-disable-next-line no-await-in-loop
    const { value, done } = await h.step(`iterator page ${pages.length + 1}`, () => it.next());
    if (value.length) pages.push(texts(value));
    if (done || pages.length > 5) break;
  }
  assert.deepEqual(pages, [['m4', 'm5'], ['m2', 'm3'], ['m1']]);
});
