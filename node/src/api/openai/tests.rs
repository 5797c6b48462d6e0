//! Tests of the handlers' stream framing and job options.

use super::*;

fn done(text: &str) -> Event {
    Event::Done(Done {
        text: text.into(),
        completion_tokens: 2,
        prompt_tokens: 5,
        finish: "length".into(),
        warren: json!({}),
    })
}

async fn body(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_stream_keeps_alive_then_sends_pieces_finish_usage_and_done() {
    let (tx, rx) = mpsc::channel(8);
    let answer = Answer::new(Kind::Chat, "m", 1, [0; 12]);
    let r = respond(answer, true, true, rx, Duration::from_millis(20)).await;
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(70)).await; // a long prefill
        tx.send(Event::Text("Pa".into())).await.unwrap();
        tx.send(Event::Text("ris".into())).await.unwrap();
        tx.send(done("Paris")).await.unwrap();
    });
    let text = body(r).await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.contains(&": keep-alive"), "{text}");
    let data: Vec<Value> = events
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(data[1]["choices"][0]["delta"]["content"], "Pa");
    assert_eq!(data[2]["choices"][0]["delta"]["content"], "ris");
    assert_eq!(data[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(data[4]["usage"]["total_tokens"], 7);
    assert_eq!(events.last(), Some(&"data: [DONE]"));
}

#[tokio::test]
async fn whole_answers_and_failures() {
    let (tx, rx) = mpsc::channel(8);
    tx.send(Event::Text("x".into())).await.unwrap();
    tx.send(done("xy")).await.unwrap();
    let r = respond(
        Answer::new(Kind::Text, "m", 1, [0; 12]),
        false,
        false,
        rx,
        KEEPALIVE,
    )
    .await;
    let v: Value = serde_json::from_str(&body(r).await).unwrap();
    assert_eq!(v["choices"][0]["text"], "xy");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    let (tx, rx) = mpsc::channel(8);
    tx.send(Event::Error(OpenAiError::server(503, "no operator")))
        .await
        .unwrap();
    let r = respond(
        Answer::new(Kind::Chat, "m", 1, [0; 12]),
        false,
        false,
        rx,
        KEEPALIVE,
    )
    .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<Value>(&body(r).await).unwrap()["error"]["type"],
        "api_error"
    );

    // Failing after the stream began: an error event, then [DONE].
    let (tx, rx) = mpsc::channel(8);
    tx.send(Event::Error(OpenAiError::server(502, "operator gone")))
        .await
        .unwrap();
    drop(tx);
    let r = respond(
        Answer::new(Kind::Chat, "m", 1, [0; 12]),
        true,
        false,
        rx,
        KEEPALIVE,
    )
    .await;
    let text = body(r).await;
    assert!(
        text.contains("\"operator gone\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
}

#[test]
fn job_options_are_checked_and_defaulted() {
    let model = ContentId::of_block(warren_protocol::Codec::Raw, b"m");
    let p: Sampling = serde_json::from_str(r#"{"stop":["", "END"],"top_p":0.5,"seed":4}"#).unwrap();
    let r = job(model, &p).unwrap();
    assert_eq!(
        (r.max_tokens, r.temperature, r.seed),
        (DEFAULT_MAX_TOKENS, 1.0, 4)
    );
    assert_eq!(
        (r.top_p, r.stop.clone(), r.usage),
        (Some(0.5), vec!["END".to_string()], true)
    );
    let greedy: Sampling = serde_json::from_str(r#"{"top_p":0}"#).unwrap();
    assert_eq!(job(model, &greedy).unwrap().temperature, 0.0);
    for bad in [
        r#"{"n":2}"#,
        r#"{"max_tokens":0}"#,
        r#"{"temperature":2.5}"#,
        r#"{"top_p":1.5}"#,
    ] {
        let p: Sampling = serde_json::from_str(bad).unwrap();
        assert_eq!(job(model, &p).unwrap_err().status, 400, "{bad}");
    }
    let mut h = HeaderMap::new();
    assert!(!anon(&h));
    h.insert(ANON_HEADER, "1".parse().unwrap());
    assert!(anon(&h));
}
