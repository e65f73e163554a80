//! The broker's container image through testcontainers (feature `docker`):
//! `docker build -t kcl-rs/local-broker . && cargo test -p integration-tests --features docker --test docker_image`.
//! Without a reachable Docker engine the test says so and passes without starting anything.
#![cfg(feature = "docker")]

use aws_sdk_kinesis::primitives::Blob;
use integration_tests::container::{LocalBrokerImage, PORT, engine_unreachable};
use integration_tests::{create_stream, http_get, kinesis_client};
use testcontainers::runners::AsyncRunner;

#[tokio::test]
async fn the_container_serves_kinesis_and_its_health_page() {
    if let Some(why) = engine_unreachable() {
        eprintln!("SKIP the_container_serves_kinesis_and_its_health_page: {why}");
        return;
    }
    let container = LocalBrokerImage::default()
        .start()
        .await
        .expect("the image starts (build it first: docker build -t kcl-rs/local-broker .)");
    let port = container
        .get_host_port_ipv4(PORT)
        .await
        .expect("port 4567 is published");
    let endpoint = format!("http://127.0.0.1:{port}");
    let kinesis = kinesis_client(&endpoint);
    create_stream(&kinesis, "in-a-container", 1).await;
    kinesis
        .put_record()
        .stream_name("in-a-container")
        .partition_key("k")
        .data(Blob::new(b"hello".to_vec()))
        .send()
        .await
        .expect("PutRecord succeeds");
    let addr = ([127, 0, 0, 1], port).into();
    let (status, body) = http_get(addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = http_get(addr, "/").await;
    assert!(page.contains("in-a-container"), "{page}");
}
