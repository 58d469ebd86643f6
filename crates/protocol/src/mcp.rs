//! MCP method names and the few parameters routing looks at.

use serde_json::value::RawValue;

use crate::object::RawObject;

/// `initialize` (session era).
pub const INITIALIZE: &str = "initialize";
/// `notifications/initialized` (session era).
pub const INITIALIZED: &str = "notifications/initialized";
/// `server/discover` (stateless era).
pub const DISCOVER: &str = "server/discover";
/// `ping`.
pub const PING: &str = "ping";
/// `tools/list`.
pub const TOOLS_LIST: &str = "tools/list";
/// `tools/call`.
pub const TOOLS_CALL: &str = "tools/call";
/// `resources/list`.
pub const RESOURCES_LIST: &str = "resources/list";
/// `resources/templates/list`.
pub const RESOURCE_TEMPLATES_LIST: &str = "resources/templates/list";
/// `resources/read`.
pub const RESOURCES_READ: &str = "resources/read";
/// `resources/subscribe`.
pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
/// `resources/unsubscribe`.
pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
/// `prompts/list`.
pub const PROMPTS_LIST: &str = "prompts/list";
/// `prompts/get`.
pub const PROMPTS_GET: &str = "prompts/get";
/// `completion/complete`.
pub const COMPLETE: &str = "completion/complete";
/// `logging/setLevel`.
pub const SET_LEVEL: &str = "logging/setLevel";
/// `notifications/cancelled`.
pub const CANCELLED: &str = "notifications/cancelled";
/// `notifications/progress`.
pub const PROGRESS: &str = "notifications/progress";
/// `notifications/message` (logging).
pub const LOG_MESSAGE: &str = "notifications/message";
/// `notifications/tools/list_changed`.
pub const TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
/// `notifications/resources/list_changed`.
pub const RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
/// `notifications/resources/updated`.
pub const RESOURCES_UPDATED: &str = "notifications/resources/updated";
/// `notifications/prompts/list_changed`.
pub const PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";

/// Whether a tool server's notification concerns every client of its route (a list or
/// a resource changed), whichever call's stream it came on.
pub fn is_route_wide(method: &str) -> bool {
    matches!(
        method,
        TOOLS_LIST_CHANGED | PROMPTS_LIST_CHANGED | RESOURCES_LIST_CHANGED | RESOURCES_UPDATED
    )
}

/// What a request names for routing: the `Mcp-Name` of the stateless era.
///
/// `tools/call` and `prompts/get` name a tool or prompt (`params.name`);
/// `resources/read` names a URI (`params.uri`). Other methods name nothing.
pub fn routing_name(method: &str, params: Option<&RawValue>) -> Option<String> {
    let key = match method {
        TOOLS_CALL | PROMPTS_GET => "name",
        RESOURCES_READ | RESOURCES_SUBSCRIBE | RESOURCES_UNSUBSCRIBE => "uri",
        _ => return None,
    };
    RawObject::parse(params?.get()).ok()?.get_str(key)
}

/// Whether the method is answered by a list of items that mcp-edge aggregates.
pub fn is_list(method: &str) -> bool {
    matches!(
        method,
        TOOLS_LIST | RESOURCES_LIST | RESOURCE_TEMPLATES_LIST | PROMPTS_LIST
    )
}
