//! tokengate
