use serde::{Deserialize, Serialize};

/// The error body every refusal has: `{"error": "...", "code"?: "..."}`.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// For programs, on some errors: `quota_exceeded`, `store_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}
