'use strict';
// Member mute ("shutup"): muteMembers, the pushes, a muted member's send
// refused, queryMutedMembers, unmuteMembers.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('muteMembers and unmuteMembers', async () => {
  const a = await h.login(h.uid('mua'));
  const b = await h.login(h.uid('mub'));
  const c = await h.login(h.uid('muc'));
  const conv = await a.client.createConversation({ members: [b.client.id, c.client.id], unique: false });
  const convAtB = await b.client.getConversation(conv.id);

  const bMuted = h.once(b.client, 'muted', { filter: (_, cv) => cv.id === conv.id });
  const cSees = h.once(c.client, 'membersmuted', { filter: (_, cv) => cv.id === conv.id });
  const res = await h.step('a mutes b', () => conv.muteMembers([b.client.id]));
  assert.deepEqual(res.successfulClientIds, [b.client.id]);
  assert.deepEqual(res.failures, []);
  const [mp] = await h.step('b gets MUTED', () => bMuted);
  assert.equal(mp.mutedBy, a.client.id);
  const [cp] = await h.step('c gets MEMBERS_MUTED', () => cSees);
  assert.deepEqual(cp.members, [b.client.id]);

  const err = await h.step('b cannot send', () =>
    h.failure(convAtB.send(new b.sdk.TextMessage('shh')), 'send while muted'),
  );
  assert.ok(Number.isInteger(err.code), `a coded refusal, got ${err.code}: ${err.message}`);
  const listed = await h.step('queryMutedMembers', () => conv.queryMutedMembers());
  assert.deepEqual(listed.results, [b.client.id]);

  const bUnmuted = h.once(b.client, 'unmuted', { filter: (_, cv) => cv.id === conv.id });
  const un = await h.step('a unmutes b', () => conv.unmuteMembers([b.client.id]));
  assert.deepEqual(un.successfulClientIds, [b.client.id]);
  await h.step('b gets UNMUTED', () => bUnmuted);
  const atC = h.nextMessage(c.client, conv.id, (m) => m.text === 'free again');
  await h.step('b sends again', () => convAtB.send(new b.sdk.TextMessage('free again')));
  await h.step('c receives', () => atC);
  const none = await conv.queryMutedMembers();
  assert.deepEqual(none.results, []);
});
