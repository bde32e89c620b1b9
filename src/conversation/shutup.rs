//! Muting members (LeanCloud's "shutup"): the owner or a manager stops
//! members sending in a conversation until unmuted. The send path's check
//! is [`crate::core::moderation::refuse_shutup`] (in `message::send`); the
//! rules of who may mute whom are [`crate::core::moderation::judge`].

use super::moderation::{change, check_batch, partial};
use super::notify_members;
use crate::core::Caller;
use crate::core::moderation::List;
use crate::hub::Hub;
use crate::protocol::{ConvId, ErrorBody, Event, Reply};

/// LeanCloud's `conv/add_shutup`. The muted hear `Shutuped`, everyone in
/// the conversation (them included) `MembersShutuped`, as LeanCloud does.
pub async fn add(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
) -> Result<Reply, ErrorBody> {
    set(hub, caller, conv, members, true).await
}

/// LeanCloud's `conv/remove_shutup`: `Unshutuped` and `MembersUnshutuped`.
pub async fn remove(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
) -> Result<Reply, ErrorBody> {
    set(hub, caller, conv, members, false).await
}

async fn set(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    members: Vec<String>,
    on: bool,
) -> Result<Reply, ErrorBody> {
    check_batch(&members)?;
    let c = hub.convs.live(conv)?;
    let (verdict, changed) = change(hub, caller, &c, List::Shutup, &members, on)?;
    if !changed.is_empty() {
        hub.pipeline.barrier().await?;
        let by = caller.client.clone();
        let own = if on {
            Event::Shutuped {
                conv,
                by: by.clone(),
            }
        } else {
            Event::Unshutuped {
                conv,
                by: by.clone(),
            }
        };
        hub.registry.notify(changed.iter().map(String::as_str), own);
        let all = if on {
            Event::MembersShutuped {
                conv,
                members: changed,
                by,
            }
        } else {
            Event::MembersUnshutuped {
                conv,
                members: changed,
                by,
            }
        };
        notify_members(hub, &c, all);
    }
    Ok(partial(verdict))
}
