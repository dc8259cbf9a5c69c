// Checks of the `records` fuzz target: the binary record format of
// `mqtt_session::broker::record` on arbitrary bytes, as a broker reads its storage at start.
// Decoding answers with a record or an error, never panics and never allocates more than the
// input holds; a decoded record encodes back to bytes that decode to the same record; and a
// stored message decodes the same way. `include!`d by `fuzz/fuzz_targets/records.rs` and by
// `mqtt-session/tests/fuzz_records_corpus.rs` (which replays the committed corpus on stable).

#[allow(unreachable_pub)] // `pub` for the fuzz target, which includes it at its crate root
mod records_checks {
    use bytes::{Bytes, BytesMut};
    use mqtt_session::broker::record::{
        decode_message, decode_record, encode_message, encode_record,
    };

    /// Runs every check on `data`.
    pub fn run(data: &[u8]) {
        let src = Bytes::copy_from_slice(data);
        if let Ok(record) = decode_record(&src) {
            let mut again = BytesMut::new();
            encode_record(&record, &mut again).expect("a decoded record encodes");
            let back = decode_record(&again.freeze()).expect("an encoded record decodes");
            assert_eq!(back, record, "record round trip");
        }
        if let Ok(message) = decode_message(&src) {
            let mut again = BytesMut::new();
            encode_message(&message, &mut again).expect("a decoded message encodes");
            let back = decode_message(&again.freeze()).expect("an encoded message decodes");
            assert_eq!(back, message, "message round trip");
        }
    }
}
