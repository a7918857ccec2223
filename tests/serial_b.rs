//! The second test binary of `serial_a.rs`, whose driver runs these tests.
//! They sit in a module, so that their libtest names (`nested::test_above`)
//! differ from their module path's (`serial_b::nested`) by more than the
//! crate's name.

mod common;
mod serial;

mod nested {
    use crate::serial;
    use lockattr::exclusive;

    #[test]
    #[ignore = "run by serial_a's driver, in a process of its own"]
    #[exclusive("serial-db")]
    fn test_above() {
        serial::body("serial_b::nested::test_above");
    }

    #[exclusive("serial-db")]
    #[test]
    #[ignore = "run by serial_a's driver, in a process of its own"]
    fn test_below() {
        serial::body("serial_b::nested::test_below");
    }

    #[tokio::test]
    #[ignore = "run by serial_a's driver, in a process of its own"]
    #[exclusive("serial-db")]
    async fn tokio_above() {
        tokio::task::yield_now().await;
        serial::body("serial_b::nested::tokio_above");
    }

    #[exclusive("serial-db")]
    #[tokio::test]
    #[ignore = "run by serial_a's driver, in a process of its own"]
    async fn tokio_below() {
        tokio::task::yield_now().await;
        serial::body("serial_b::nested::tokio_below");
    }
}
