use serde::{Deserialize, Serialize};

/// A route rule, as documented (the server's type is `tokengate_core::Rule`).
#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// HTTP methods, upper case; empty or `["*"]` means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A glob on the path after the instance token, starting with `/`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^/"))]
    pub path: String,
    /// Scopes the bearer token must hold (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A room token's privileges, as documented (the server's type is `room::Privileges`).
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrivilegesDoc {
    pub login_room: bool,
    pub publish_stream: bool,
}
