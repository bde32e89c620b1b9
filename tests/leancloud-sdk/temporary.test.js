'use strict';
// Temporary conversations (createTemporaryConversation with a ttl, `_tmp:`
// ids) and their expiry (4323 TEMPORARY_CONVERSATION_EXPIRED).

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

test('temporary conversation: create, message, query by id, expiry', async () => {
  const a = await h.login(h.uid('tma'));
  const b = await h.login(h.uid('tmb'));
  const TTL = 3;
  const invited = h.once(b.client, 'invited');
  const tmp = await h.step('a creates a temporary conversation (ttl 3 s)', () =>
    a.client.createTemporaryConversation({ members: [b.client.id], ttl: TTL }),
  );
  assert.ok(tmp instanceof a.sdk.TemporaryConversation);
  assert.ok(tmp.id.startsWith('_tmp:'), `temporary ids start with _tmp:, got ${tmp.id}`);
  assert.ok(tmp.expiredAt instanceof Date && tmp.expiredAt > new Date(), 'started answers tempConvTTL');
  const [, cv] = await h.step('b is invited', () => invited);
  assert.equal(cv.id, tmp.id);

  const got = h.nextMessage(b.client, tmp.id, (m) => m.text === 'short-lived');
  await h.step('a sends', () => tmp.send(new a.sdk.TextMessage('short-lived')));
  await h.step('b receives', () => got);

  const viaQuery = await h.step('b queries it by id (tempConvIds)', () => b.client.getConversation(tmp.id, true));
  assert.ok(viaQuery instanceof b.sdk.TemporaryConversation);
  assert.ok(viaQuery.members.includes(a.client.id));
  assert.ok(viaQuery.expiredAt instanceof Date, 'the row carries ttl');

  // The SDK refuses locally once expiredAt passes; push expiredAt ahead so
  // the request reaches the server, which must answer 4323 after the ttl.
  const deadline = Date.now() + (TTL + 10) * 1000;
  let err = null;
  await h.step('after the ttl the server answers 4323', () =>
    h.eventually(
      'the temporary conversation to expire',
      async () => {
        tmp.expiredAt = Date.now() + 60000;
        try {
          await tmp.send(new a.sdk.TextMessage('too late?'));
          return `still accepted at ${new Date().toISOString()}`;
        } catch (e) {
          err = e;
          return true;
        }
      },
      deadline - Date.now(),
    ),
  );
  assert.equal(err.code, 4323, `TEMPORARY_CONVERSATION_EXPIRED (4323 or a 4303 the SDK maps), got ${err.code}: ${err.message}`);
});
