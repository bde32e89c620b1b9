'use strict';
// Service (system) conversations: the Rust harness creates one and sends
// through the admin API; SDK clients subscribe (by the admin API and by
// ServiceConversation#subscribe) and receive broadcasts.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

after(h.closeAll);

const text = (t) => JSON.stringify({ _lctype: -1, _lctext: t });

test('service conversation: subscribe, broadcast, targeted message', { skip: !h.hasControl() && 'needs tests/leancloud_sdk.rs' }, async () => {
  const b = await h.login(h.uid('sb'));
  const c = await h.login(h.uid('sc'));
  const { conv } = await h.step('the harness creates a service conversation', () =>
    h.ask('service_create', { name: 'news' }),
  );
  await h.step('the harness subscribes b (admin API)', () => h.ask('service_subscribe', { conv, client: b.client.id }));

  const svcAtC = await h.step('c finds it by id', () => c.client.getConversation(conv));
  assert.ok(svcAtC instanceof c.sdk.ServiceConversation, 'the conv/query row says sys: true');
  await h.step('c subscribes (ServiceConversation#subscribe)', () => svcAtC.subscribe());
  const listed = await h.step('getServiceConversationQuery finds it', () =>
    c.client.getServiceConversationQuery().equalTo('objectId', conv).find(),
  );
  assert.deepEqual(listed.map((x) => x.id), [conv]);

  const atB = h.nextMessage(b.client, conv, (m) => m.text === 'breaking');
  const atC = h.nextMessage(c.client, conv, (m) => m.text === 'breaking');
  const { msgId } = await h.step('the harness broadcasts to subscribers', () =>
    h.ask('service_broadcast', { conv, from: 'newsroom', message: text('breaking') }),
  );
  const [{ message: mb, conversation: cb }, { message: mc }] = await h.step('b and c receive it', () =>
    Promise.all([atB, atC]),
  );
  assert.equal(mb.id, msgId);
  assert.equal(mb.from, 'newsroom');
  assert.ok(cb instanceof b.sdk.ServiceConversation);
  assert.equal(mc.id, msgId);

  const onlyB = h.nextMessage(b.client, conv, (m) => m.text === 'just for b');
  const { msgId: direct } = await h.step('the harness sends to b alone', () =>
    h.ask('service_send', { conv, from: 'newsroom', to: [b.client.id], message: text('just for b') }),
  );
  const { message } = await h.step('b receives it', () => onlyB);
  assert.equal(message.id, direct);

  await h.step('c unsubscribes', () => svcAtC.unsubscribe());
  const again = h.nextMessage(b.client, conv, (m) => m.text === 'after c left');
  await h.ask('service_broadcast', { conv, from: 'newsroom', message: text('after c left') });
  await h.step('b still receives broadcasts', () => again);
});
