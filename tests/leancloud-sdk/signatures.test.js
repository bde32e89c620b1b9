'use strict';
// Conversation-operation signatures (server run with
// auth.conversation_signatures on; the harness sets TIDINGS_CONV_SIGNATURES=1):
// create, invite, kick, join, quit and block signed by the app's factories;
// unsigned and forged operations refused with 4302.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

const signed = {
  conversationSignatureFactory: h.signConversation,
  blacklistSignatureFactory: h.signBlacklist,
};

function forgedConversation(conversationId, clientId, members, action) {
  const s = h.signConversation(conversationId, clientId, members, action);
  return { ...s, signature: s.signature.replace(/^./, (ch) => (ch === '0' ? '1' : '0')) };
}

test('signed conversation operations pass; unsigned and forged ones are refused', { skip: process.env.TIDINGS_CONV_SIGNATURES !== '1' && 'needs a server with conversation signatures on' }, async () => {
  const a = await h.login(h.uid('sga'), signed);
  const b = await h.login(h.uid('sgb'), signed);
  const c = await h.login(h.uid('sgc'), signed);
  const conv = await h.step('a creates, signed', () =>
    a.client.createConversation({ members: [b.client.id], unique: false }),
  );
  const cInvited = h.once(c.client, 'invited');
  await h.step('a invites c, signed', () => conv.add([c.client.id]).then((r) => assert.deepEqual(r.failures, [])));
  await h.step('c is invited', () => cInvited);
  await h.step('a kicks c, signed', () => conv.remove([c.client.id]).then((r) => assert.deepEqual(r.failures, [])));
  const convAtC = await c.client.getConversation(conv.id);
  await h.step('c joins, signed', () => convAtC.join());
  await h.step('c quits, signed', () => convAtC.quit());
  await h.step('a blocks c, signed', () => conv.blockMembers([c.client.id]).then((r) => assert.deepEqual(r.failures, [])));
  await h.step('a unblocks c, signed', () => conv.unblockMembers([c.client.id]).then((r) => assert.deepEqual(r.failures, [])));

  const plain = await h.login(h.uid('sgplain'));
  const e1 = await h.step('an unsigned create is refused', () =>
    h.failure(plain.client.createConversation({ members: [b.client.id], unique: false }), 'unsigned create'),
  );
  assert.equal(e1.code, 4302, `CONVERSATION_SIGNATURE_FAILED, got ${e1.code}: ${e1.message}`);

  const forger = await h.login(h.uid('sgforge'), { conversationSignatureFactory: forgedConversation });
  const e2 = await h.step('a forged create is refused', () =>
    h.failure(forger.client.createConversation({ members: [b.client.id], unique: false }), 'forged create'),
  );
  assert.equal(e2.code, 4302);
  const convAtForger = await forger.client.getConversation(conv.id);
  const e3 = await h.step('a forged join is refused', () => h.failure(convAtForger.join(), 'forged join'));
  assert.equal(e3.code, 4302);
});
