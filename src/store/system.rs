//! System conversations' storage: `_SysMessage` rows, their webhook queue
//! and TTL'd broadcasts (issue #6). Trees `sys` and `broadcasts`.
