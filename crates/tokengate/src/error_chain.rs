//! Telling what caused an error that comes back wrapped by hyper or hyper-util (an
//! egress refusal, a body deadline, a size limit), whatever the wrapping.

use std::error::Error;

/// Whether `error`, or one of its sources, is a `T`.
pub fn caused_by<T: Error + 'static>(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[test]
    fn sources_are_walked() {
        assert!(caused_by::<Inner>(&Outer(Inner)));
        assert!(caused_by::<Outer>(&Outer(Inner)));
        assert!(!caused_by::<std::io::Error>(&Outer(Inner)));
    }
}
