// A LeanEngine hook app for tests/leanengine.rs: LeanCloud's own IM hook
// examples (seeds/000, "Hooks API"), run on the real `leanengine` package as
// LEANCLOUD-REFERENCE.md says: no AV.init (the package reads the
// LEANCLOUD_APP_* variables itself), app.use(AV.express()), listen on
// LEANCLOUD_APP_PORT on 127.0.0.1. It makes no outbound connection.
//
// Test scaffolding, not part of the examples: `recorded` keeps every hook
// call and what the hook returned, served at GET /calls.
'use strict';

const AV = require('leanengine');
const app = require('express')();

const calls = [];

function recorded(hook, fn) {
  return async (request) => {
    const call = { hook, params: request.params };
    calls.push(call);
    const result = await fn(request);
    call.result = result === undefined ? null : result;
    return result;
  };
}

AV.Cloud.onIMMessageReceived(recorded('_messageReceived', (request) => {
  let content = request.params.content;
  let processedContent = content.replace("crap", "**");
  // Must provide a return value, or an error will occur
  return {
    content: processedContent,
  };
}));

AV.Cloud.onIMReceiversOffline(recorded('_receiversOffline', (request) => {
  let params = request.params;
  let content = params.content;

  // params.content is the content of the message
  let shortContent = content;

  if (shortContent.length > 6) {
    shortContent = content.slice(0, 6);
  }

  console.log("shortContent", shortContent);

  return {
    pushMessage: JSON.stringify({
      // Increment the number of unread messages; you can provide a number as well
      badge: "Increment",
      sound: "default",
      // Use the dev certificate
      _profile: "dev",
      alert: shortContent,
    }),
  };
}));

AV.Cloud.onIMConversationStart(recorded('_conversationStart', (request) => {
  if (request.params.members.length < 4) {
    return {
      reject: true,
      code: 1234,
      detail: "Please invite at least 3 people to the conversation",
    };
  } else {
    return {};
  }
}));

AV.Cloud.onIMConversationRemove(recorded('_conversationRemove', async (request) => {
  const supporters = ["Bast", "Hypnos", "Kthanid"];
  const members = request.params.members;
  for (const member of members) {
    if (supporters.includes(member)) {
      return {
        "reject": true,
        "code": 1928,
        "detail": `You cannot remove the staff member ${member}`,
      };
    }
  }
  return {};
}));

AV.Cloud.onIMConversationUpdate(recorded('_conversationUpdate', (request) => {
  if ("attr" in request.params && "name" in request.params.attr) {
    return {
      reject: true,
      code: 1949,
      detail: "The name of the conversation cannot be updated.",
    };
  }
}));

app.use(AV.express());

// Test scaffolding: the calls so far, for the test to check.
app.get('/calls', (req, res) => res.json(calls));

app.listen(parseInt(process.env.LEANCLOUD_APP_PORT || 3000), '127.0.0.1');
