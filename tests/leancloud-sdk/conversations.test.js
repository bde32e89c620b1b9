'use strict';
// Conversations: unique create, add, remove, join, quit, update (name and a
// custom attribute), and query (by id, by members, sort by lm, limit).

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

const sorted = (xs) => [...xs].sort();

test('unique conversation: the same members give the same conversation', async () => {
  const a = await h.login(h.uid('ua'));
  const b = await h.login(h.uid('ub'));
  const invited = h.once(b.client, 'invited');
  const first = await h.step('a creates a unique conversation with b', () =>
    a.client.createConversation({ members: [b.client.id], name: 'pair', unique: true }),
  );
  assert.ok(first.id);
  assert.deepEqual(sorted(first.members), sorted([a.client.id, b.client.id]));
  const [payload, convAtB] = await h.step('b is told it was invited', () => invited);
  assert.equal(payload.invitedBy, a.client.id);
  assert.equal(convAtB.id, first.id);

  const again = await h.step('a creates it again', () =>
    a.client.createConversation({ members: [b.client.id], name: 'pair', unique: true }),
  );
  assert.equal(again.id, first.id, 'a unique create returns the existing conversation');
  const fromB = await h.step('b creates it from its side', () =>
    b.client.createConversation({ members: [a.client.id], unique: true }),
  );
  assert.equal(fromB.id, first.id, 'the member set, not the creator, makes it unique');

  const other = await h.step('a non-unique create makes a new one', () =>
    a.client.createConversation({ members: [b.client.id], name: 'pair', unique: false }),
  );
  assert.notEqual(other.id, first.id);
});

test('add, remove, join and quit, with the events each member sees', async () => {
  const a = await h.login(h.uid('ma'));
  const b = await h.login(h.uid('mb'));
  const c = await h.login(h.uid('mc'));
  const d = await h.login(h.uid('md'));
  const conv = await h.step('a creates a group with b', () =>
    a.client.createConversation({ members: [b.client.id], name: 'group', unique: false }),
  );

  // add
  const cInvited = h.once(c.client, 'invited', { filter: (_, cv) => cv.id === conv.id });
  const bSeesJoin = h.once(b.client, 'membersjoined', { filter: (p, cv) => cv.id === conv.id });
  const added = await h.step('a adds c', () => conv.add([c.client.id]));
  assert.deepEqual(added.successfulClientIds, [c.client.id]);
  assert.deepEqual(added.failures, []);
  assert.ok(conv.members.includes(c.client.id), 'the SDK adds c to its member list');
  const [inv] = await h.step('c gets INVITED', () => cInvited);
  assert.equal(inv.invitedBy, a.client.id);
  const [joined] = await h.step('b gets MEMBERS_JOINED', () => bSeesJoin);
  assert.deepEqual(joined.members, [c.client.id]);
  assert.equal(joined.invitedBy, a.client.id);

  // c can now talk in it
  const convAtC = await h.step('c gets the conversation by id', () => c.client.getConversation(conv.id));
  assert.ok(convAtC);
  const atB = h.nextMessage(b.client, conv.id, (m) => m.text === 'c was added');
  await h.step('c sends', () => convAtC.send(new c.sdk.TextMessage('c was added')));
  await h.step('b receives c', () => atB);

  // remove
  const cKicked = h.once(c.client, 'kicked', { filter: (_, cv) => cv.id === conv.id });
  const bSeesLeft = h.once(b.client, 'membersleft', { filter: (p, cv) => cv.id === conv.id });
  const removed = await h.step('a removes c', () => conv.remove([c.client.id]));
  assert.deepEqual(removed.successfulClientIds, [c.client.id]);
  assert.ok(!conv.members.includes(c.client.id));
  const [kick] = await h.step('c gets KICKED', () => cKicked);
  assert.equal(kick.kickedBy, a.client.id);
  const [left] = await h.step('b gets MEMBERS_LEFT', () => bSeesLeft);
  assert.deepEqual(left.members, [c.client.id]);
  const err = await h.step('c can no longer send', () =>
    h.failure(convAtC.send(new c.sdk.TextMessage('after kick')), 'send after removal'),
  );
  assert.ok(err.code >= 4300 && err.code < 4500, `a conversation/message error code, got ${err.code} ${err.message}`);

  // join
  const convAtD = await h.step('d, not a member, finds it by id', () => d.client.getConversation(conv.id));
  assert.ok(convAtD, 'a normal conversation is visible by id (LeanCloud without signatures)');
  const aSeesJoin = h.once(a.client, 'membersjoined', { filter: (p, cv) => cv.id === conv.id });
  await h.step('d joins', () => convAtD.join());
  assert.ok(convAtD.members.includes(d.client.id));
  const [dj] = await h.step('a gets MEMBERS_JOINED for d', () => aSeesJoin);
  assert.deepEqual(dj.members, [d.client.id]);
  assert.equal(dj.invitedBy, d.client.id);
  const atD = h.nextMessage(d.client, conv.id, (m) => m.text === 'welcome d');
  await h.step('a sends to d', () => conv.send(new a.sdk.TextMessage('welcome d')));
  await h.step('d receives', () => atD);

  // quit
  const aSeesQuit = h.once(a.client, 'membersleft', { filter: (p, cv) => cv.id === conv.id });
  await h.step('d quits', () => convAtD.quit());
  assert.ok(!convAtD.members.includes(d.client.id));
  const [dq] = await h.step('a gets MEMBERS_LEFT for d', () => aSeesQuit);
  assert.deepEqual(dq.members, [d.client.id]);
  const fresh = await h.step('a re-reads the members', () => a.client.getConversation(conv.id, true));
  assert.deepEqual(sorted(fresh.members), sorted([a.client.id, b.client.id]));
});

test('update: name and a custom attribute, pushed to members and stored', async () => {
  const a = await h.login(h.uid('upa'));
  const b = await h.login(h.uid('upb'));
  // The SDK fetches the conversation when the invitation comes and writes
  // that row over its cached copy when the answer is handled, which can be
  // after a later push was applied: b's copy is settled first.
  const invited = h.once(b.client, 'invited');
  const conv = await h.step('create with a custom attribute', () =>
    a.client.createConversation({ members: [b.client.id], name: 'before', topic: 'go', unique: false }),
  );
  await h.step('b is invited', () => invited);
  assert.equal(conv.name, 'before');
  assert.equal(conv.get('topic'), 'go');
  const atB0 = await h.step('b reads it', () => b.client.getConversation(conv.id, true));
  assert.equal(atB0.name, 'before');
  assert.equal(atB0.get('topic'), 'go', 'custom attributes come back in conv/query rows');
  assert.equal(atB0.creator, a.client.id);

  const updated = h.once(b.client, 'conversationinfoupdated', { filter: (p, cv) => cv.id === conv.id });
  conv.name = 'after';
  conv.set('topic', 'rust');
  await h.step('a saves (conv/update)', () => conv.save());
  assert.equal(conv.name, 'after');
  const [payload, cv] = await h.step('b gets CONVERSATION_INFO_UPDATED', () => updated);
  assert.equal(payload.updatedBy, a.client.id);
  assert.equal(payload.attributes.name, 'after');
  assert.equal(payload.attributes.topic, 'rust');
  assert.equal(cv.name, 'after', "the SDK applied the push to b's copy");

  const atB = await h.step('b re-reads it', () => b.client.getConversation(conv.id, true));
  assert.equal(atB.name, 'after');
  assert.equal(atB.get('topic'), 'rust');
  const byAttr = await h.step('query by the custom attribute', () =>
    b.client.getQuery().equalTo('topic', 'rust').containsMembers([b.client.id]).find(),
  );
  assert.deepEqual(byAttr.map((x) => x.id), [conv.id]);
});

test('query: by id, containsMembers, withMembers, sort by lm, limit', async () => {
  const a = await h.login(h.uid('qa'));
  const b = await h.login(h.uid('qb'));
  const c = await h.login(h.uid('qc'));
  const pair = await h.step('a-b unique', () => a.client.createConversation({ members: [b.client.id], name: 'ab' }));
  const abc = await h.step('a-b-c group', () =>
    a.client.createConversation({ members: [b.client.id, c.client.id], name: 'abc', unique: false }),
  );
  const ac = await h.step('a-c group', () =>
    a.client.createConversation({ members: [c.client.id], name: 'ac', unique: false }),
  );

  const byId = await h.step('getConversation by id, no cache', () => c.client.getConversation(abc.id, true));
  assert.equal(byId.id, abc.id);
  assert.equal(byId.name, 'abc');
  assert.deepEqual(sorted(byId.members), sorted([a.client.id, b.client.id, c.client.id]));
  assert.ok(byId.createdAt instanceof Date && !Number.isNaN(byId.createdAt.getTime()), 'createdAt is a date');
  const missing = await h.step('an unknown id gives null', () =>
    c.client.getConversation('000000000000000000000000', true),
  );
  assert.equal(missing, null);

  const withB = await h.step('containsMembers([a, b])', () =>
    a.client.getQuery().containsMembers([a.client.id, b.client.id]).find(),
  );
  assert.deepEqual(sorted(withB.map((x) => x.id)), sorted([pair.id, abc.id]));
  const exactly = await h.step('withMembers([a, b])', () =>
    a.client.getQuery().withMembers([a.client.id, b.client.id]).find(),
  );
  assert.deepEqual(exactly.map((x) => x.id), [pair.id]);
  const containedIn = await h.step("containedIn('objectId', …)", () =>
    a.client.getQuery().containedIn('objectId', [ac.id, pair.id]).find(),
  );
  assert.deepEqual(sorted(containedIn.map((x) => x.id)), sorted([ac.id, pair.id]));

  // Messages in the order pair, ac, abc: lm descending is abc, ac, pair.
  for (const [conv, text] of [[pair, 'one'], [ac, 'two'], [abc, 'three']]) {
    // eslint-disable-next-line no-await-in-loop
    await h.step(`send ${text}`, () => conv.send(new a.sdk.TextMessage(text)));
  }
  const newest = await h.step("containsMembers([a]).descending('lm')", () =>
    a.client.getQuery().containsMembers([a.client.id]).descending('lm').find(),
  );
  assert.deepEqual(newest.map((x) => x.id), [abc.id, ac.id, pair.id]);
  assert.ok(newest[0].lastMessageAt instanceof Date, 'rows carry lm');
  const oldest = await h.step("ascending('lm')", () =>
    a.client.getQuery().containsMembers([a.client.id]).ascending('lm').find(),
  );
  assert.deepEqual(oldest.map((x) => x.id), [pair.id, ac.id, abc.id]);
  const two = await h.step('limit(2)', () =>
    a.client.getQuery().containsMembers([a.client.id]).descending('lm').limit(2).find(),
  );
  assert.deepEqual(two.map((x) => x.id), [abc.id, ac.id]);
  const skipped = await h.step('skip(2)', () =>
    a.client.getQuery().containsMembers([a.client.id]).descending('lm').skip(2).find(),
  );
  assert.deepEqual(skipped.map((x) => x.id), [pair.id]);
  const withLast = await h.step('withLastMessagesRefreshed', () =>
    b.client.getQuery().equalTo('objectId', abc.id).withLastMessagesRefreshed().find(),
  );
  assert.equal(withLast.length, 1);
  assert.ok(withLast[0].lastMessage, 'flag 2 returns the last message');
  assert.equal(withLast[0].lastMessage.text, 'three');
});
