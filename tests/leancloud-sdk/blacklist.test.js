'use strict';
// Conversation blacklist: blockMembers removes and bars a member,
// queryBlockedMembers, unblockMembers lets it back.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('blockMembers and unblockMembers', async () => {
  const a = await h.login(h.uid('bla'));
  const b = await h.login(h.uid('blb'));
  const c = await h.login(h.uid('blc'));
  const cInvited = h.once(c.client, 'invited');
  const conv = await a.client.createConversation({ members: [b.client.id, c.client.id], unique: false });
  // c's SDK caches the conversation while handling INVITED; later pushes
  // (BLOCKED) are dispatched with that copy.
  await h.step('c is invited', () => cInvited);

  const cBlocked = h.once(c.client, 'blocked', { filter: (_, cv) => cv.id === conv.id });
  const bSees = h.once(b.client, 'membersblocked', { filter: (_, cv) => cv.id === conv.id });
  const res = await h.step('a blocks c', () => conv.blockMembers([c.client.id]));
  assert.deepEqual(res.successfulClientIds, [c.client.id]);
  const [bp] = await h.step('c gets BLOCKED', () => cBlocked);
  assert.equal(bp.blockedBy, a.client.id);
  const [mp] = await h.step('b gets MEMBERS_BLOCKED', () => bSees);
  assert.deepEqual(mp.members, [c.client.id]);

  const listed = await h.step('queryBlockedMembers', () => conv.queryBlockedMembers());
  assert.deepEqual(listed.results, [c.client.id]);
  const fresh = await a.client.getConversation(conv.id, true);
  assert.ok(!fresh.members.includes(c.client.id), 'a blocked member is removed');

  const convAtC = await c.client.getConversation(conv.id, true);
  const err = await h.step('c cannot join back', () => h.failure(convAtC.join(), 'join while blocked'));
  assert.equal(err.code, 4315, `CONVERSATION_BLACKLISTED, got ${err.code}: ${err.message}`);
  // Tidings lets the owner and managers add members (4324 for others).
  const addErr = await h.step('a cannot add c either', () => conv.add([c.client.id]));
  assert.deepEqual(addErr.successfulClientIds, [], 'adding a blocked member fails for that member');
  assert.equal(addErr.failures.length, 1);
  assert.deepEqual(addErr.failures[0].clientIds, [c.client.id]);

  const un = await h.step('a unblocks c', () => conv.unblockMembers([c.client.id]));
  assert.deepEqual(un.successfulClientIds, [c.client.id]);
  await h.step('c joins again', () => convAtC.join());
  const atC = h.nextMessage(c.client, conv.id, (m) => m.text === 'welcome back');
  await conv.send(new a.sdk.TextMessage('welcome back'));
  await h.step('c receives', () => atC);
});
