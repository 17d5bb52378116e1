//! booking-service's endpoints, one behaviour per test, including every client error.

use crate::support::{
    BookingUnderTest, booking_body, eventually, fields_of, forged_token_for, json, problem,
    stream_events,
};
use silo_kit::events::StreamKind;
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn creating_a_booking_stores_it_pending_with_the_users_email_and_announces_it() {
    let t = BookingUnderTest::start().await;
    let (user, token) = t.users.add_user("ada@example.com");
    let response = t.create(&token, booking_body("150.5")).await;
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (_, body) = json(response).await;
    assert_eq!(
        location,
        format!("/api/bookings/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["userId"], user.id.to_string());
    assert_eq!(body["userEmail"], "ada@example.com");
    assert_eq!(body["totalAmount"], "150.50");
    assert_eq!(body["currency"], "USD");
    assert!(body.get("cancellationReason").is_none());

    let events = eventually("BookingCreated on the stream", WAIT, || async {
        let events = stream_events(&t.namespace, StreamKind::Bookings).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "BookingCreated");
    assert_eq!(events[0].data["bookingId"], body["id"]);
    assert_eq!(events[0].data["userEmail"], "ada@example.com");
}

#[tokio::test]
async fn creating_requires_a_valid_token() {
    let t = BookingUnderTest::start().await;
    let (user, _) = t.users.add_user("ada@example.com");
    let missing = t
        .http
        .post(t.url("/api/bookings"))
        .json(&booking_body("10"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"silo\""
    );
    let (status, body) = json(missing).await;
    assert_eq!(status, 401);
    assert_eq!(body["type"], problem("unauthenticated"));
    for (token, reason) in [
        (t.users.expired_token_for(user.id), "the token has expired"),
        (
            forged_token_for(user.id),
            "the token is signed by a key user-service does not publish",
        ),
        ("not-a-jwt".to_string(), "the token is not a valid JWT"),
    ] {
        let response = t.create(&token, booking_body("10")).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            format!(
                "Bearer realm=\"silo\", error=\"invalid_token\", error_description=\"{reason}\""
            )
        );
        let (status, body) = json(response).await;
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(body["type"], problem("invalid-token"));
        assert_eq!(body["detail"], reason);
    }
}

#[tokio::test]
async fn invalid_fields_are_refused_naming_the_field_and_nothing_is_stored() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    for (body, field) in [
        (
            serde_json::json!({"eventName": "", "ticketCount": 1, "totalAmount": 1}),
            "eventName",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 0, "totalAmount": 1}),
            "ticketCount",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 101, "totalAmount": 1}),
            "ticketCount",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": 0}),
            "totalAmount",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": "1.234"}),
            "totalAmount",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": 1, "currency": "EURO"}),
            "currency",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 1}),
            "totalAmount",
        ),
        (
            serde_json::json!({"eventName": "x", "ticketCount": 1, "totalAmount": 1, "status": "CONFIRMED"}),
            "status",
        ),
    ] {
        let (status, error) = json(t.create(&token, body.clone()).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["type"], problem("validation-failed"), "{error}");
        assert_eq!(fields_of(&error), [field], "{body}: {error}");
    }
    assert_nothing_stored(&t).await;
}

/// No booking and no outbox record exist.
async fn assert_nothing_stored(t: &BookingUnderTest) {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(t.app.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(t.app.pool())
        .await
        .unwrap();
    assert_eq!(outbox, 0);
}

#[tokio::test]
async fn every_invalid_field_is_listed_at_once_in_plain_words() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let body = serde_json::json!({
        "eventName": 7, "ticketCount": "two", "totalAmount": "12,50", "seats": [1, 2]
    });
    let (status, error) = json(t.create(&token, body).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        serde_json::json!({
            "type": problem("validation-failed"),
            "title": "Invalid request",
            "status": 400,
            "detail": "The request has 4 invalid fields: seats, eventName, ticketCount, totalAmount.",
            "errors": [
                {"field": "seats", "message": "seats is not a field this endpoint accepts (it accepts: eventName, ticketCount, totalAmount, currency)"},
                {"field": "eventName", "message": "eventName must be a string"},
                {"field": "ticketCount", "message": "ticketCount must be a whole number"},
                {"field": "totalAmount", "message": "totalAmount must be a decimal number such as 12.50, as a JSON number or a string, of at most 28 digits"},
            ],
        })
    );
    assert_nothing_stored(&t).await;
}

#[tokio::test]
async fn a_json_array_is_not_a_booking() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let body = serde_json::json!(["Array Event", 1, "5.00", "EUR"]);
    let (status, error) = json(t.create(&token, body).await).await;
    assert_eq!(status, 400);
    assert_eq!(error["type"], problem("body-not-object"));
    assert_eq!(
        error["detail"],
        "The request body must be a JSON object, not an array."
    );
    assert_nothing_stored(&t).await;
}

#[tokio::test]
async fn amounts_are_exact_decimals_whether_numbers_or_strings() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let send = |amount: &str| {
        t.http
            .post(t.url("/api/bookings"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"eventName":"Concert","ticketCount":1,"totalAmount":{amount}}}"#
            ))
            .send()
    };
    for (amount, stored) in [
        ("12.5", "12.50"),
        ("\"12.5\"", "12.50"),
        ("1250e-2", "12.50"),
        ("9999999999.99", "9999999999.99"),
    ] {
        let (status, body) = json(send(amount).await.unwrap()).await;
        assert_eq!(status, 201, "{amount}: {body}");
        assert_eq!(body["totalAmount"], stored, "{amount}");
    }
    // As a double this is exactly 1.0; read from its digits it has 16 decimals.
    let (status, body) = json(send("1.0000000000000001").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "totalAmount must have at most 2 decimal places"
    );
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_refused() {
    let t = BookingUnderTest::start().await;
    let (_, token) = t.users.add_user("ada@example.com");
    let send = |body: String, content_type: &'static str| {
        t.http
            .post(t.url("/api/bookings"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, body) = json(
        send("{\"eventName\":".into(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some(problem("malformed-json").as_str()))
    );
    let (status, body) = json(
        send(booking_body("1").to_string(), "text/plain")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(body["type"], problem("unsupported-media-type"));
    let huge = serde_json::json!({
        "eventName": "x".repeat(100_000), "ticketCount": 1, "totalAmount": 1
    });
    let (status, body) = json(send(huge.to_string(), "application/json").await.unwrap()).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (413, Some(problem("payload-too-large").as_str()))
    );
}

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_is_refused() {
    let t = BookingUnderTest::start().await;
    let token = t.users.token_for(Uuid::new_v4(), &["user"]);
    let (status, body) = json(t.create(&token, booking_body("10")).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["type"], problem("unknown-user"));
}

#[tokio::test]
async fn an_unknown_user_gets_503_while_user_service_is_unreachable() {
    let mut t = BookingUnderTest::start().await;
    let (_, known_token) = t.users.add_user("known@example.com");
    let (_, unknown_token) = t.users.add_user("late@example.com");
    // The first booking caches the signing keys and puts its user in the local replica.
    assert_eq!(
        t.create(&known_token, booking_body("10")).await.status(),
        201
    );
    let users = std::mem::replace(
        &mut t.users,
        crate::support::UserServiceStandIn::start().await,
    );
    users.stop().await;

    let (status, body) = json(t.create(&unknown_token, booking_body("10")).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["type"], problem("user-service-unavailable"));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("user-service is unreachable")
    );
    // A user known locally still books without user-service.
    assert_eq!(
        t.create(&known_token, booking_body("10")).await.status(),
        201
    );
}

#[tokio::test]
async fn a_booking_is_visible_to_its_owner_and_admins_only() {
    let t = BookingUnderTest::start().await;
    let (_, owner) = t.users.add_user("owner@example.com");
    let (_, other) = t.users.add_user("other@example.com");
    let admin = t.users.token_for(Uuid::new_v4(), &["user", "admin"]);
    let (_, created) = json(t.create(&owner, booking_body("10")).await).await;
    let path = format!("/api/bookings/{}", created["id"].as_str().unwrap());

    let (status, body) = json(t.get(&owner, &path).await).await;
    assert_eq!((status, &body), (200, &created));
    assert_eq!(t.get(&admin, &path).await.status(), 200);
    let (status, body) = json(t.get(&other, &path).await).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some(problem("not-found").as_str()))
    );
    let unknown = format!("/api/bookings/{}", Uuid::new_v4());
    assert_eq!(t.get(&owner, &unknown).await.status(), 404);
    let (status, body) = json(t.get(&owner, "/api/bookings/not-a-uuid").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], problem("validation-failed"));
    assert_eq!(
        body["errors"],
        serde_json::json!([{"field": "id", "message": "the path parameter id must be a UUID"}])
    );
    let anonymous = t.http.get(t.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn listing_pages_through_the_callers_bookings_newest_first() {
    let t = BookingUnderTest::start().await;
    let (_, owner) = t.users.add_user("owner@example.com");
    let (_, other) = t.users.add_user("other@example.com");
    let mut created = Vec::new();
    for _ in 0..5 {
        let (_, body) = json(t.create(&owner, booking_body("10")).await).await;
        created.push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(t.create(&other, booking_body("10")).await.status(), 201);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/bookings?limit=2&cursor={c}"),
            None => "/api/bookings?limit=2".to_string(),
        };
        let (status, page) = json(t.get(&owner, &path).await).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "every own booking once, newest first");
}

#[tokio::test]
async fn listing_filters_by_status_and_only_admins_list_other_users() {
    let t = BookingUnderTest::start().await;
    let (owner_user, owner) = t.users.add_user("owner@example.com");
    let (_, other) = t.users.add_user("other@example.com");
    let admin = t.users.token_for(Uuid::new_v4(), &["admin"]);
    let (_, first) = json(t.create(&owner, booking_body("10")).await).await;
    assert_eq!(t.create(&owner, booking_body("10")).await.status(), 201);
    let cancel = format!("/api/bookings/{}/cancel", first["id"].as_str().unwrap());
    assert_eq!(t.post_empty(&owner, &cancel).await.status(), 200);

    let (_, page) = json(t.get(&owner, "/api/bookings?status=CANCELLED").await).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], first["id"]);

    let others = format!("/api/bookings?userId={}", owner_user.id);
    let (status, body) = json(t.get(&other, &others).await).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some(problem("forbidden").as_str()))
    );
    let (status, page) = json(t.get(&admin, &others).await).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    for (query, fields) in [
        ("status=LOST", vec!["status"]),
        ("limit=0", vec!["limit"]),
        ("limit=101", vec!["limit"]),
        ("limit=ten", vec!["limit"]),
        ("cursor=garbage", vec!["cursor"]),
        ("userId=xyz", vec!["userId"]),
        ("colour=red", vec!["colour"]),
        (
            "limit=x&status=LOST&cursor=garbage",
            vec!["status", "limit", "cursor"],
        ),
    ] {
        let (status, body) = json(t.get(&owner, &format!("/api/bookings?{query}")).await).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["type"], problem("validation-failed"), "{query}");
        assert_eq!(fields_of(&body), fields, "{query}: {body}");
        assert!(!body.to_string().contains("invalid digit"), "{body}");
    }
    let (status, body) = json(t.get(&owner, "/api/bookings?limit=ten").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["message"], "limit must be a whole number");
    let (status, _) = json(t.get(&owner, "/api/bookings?limit=&cursor=").await).await;
    assert_eq!(status, 200, "empty parameters count as absent");
}

#[tokio::test]
async fn details_compose_the_live_user_and_degrade_when_user_service_is_down() {
    let mut t = BookingUnderTest::start().await;
    let (user, token) = t.users.add_user("ada@example.com");
    let (_, created) = json(t.create(&token, booking_body("10")).await).await;
    let path = format!("/api/bookings/{}/details", created["id"].as_str().unwrap());

    let (status, details) = json(t.get(&token, &path).await).await;
    assert_eq!(status, 200);
    assert_eq!(details["id"], created["id"]);
    assert_eq!(details["user"]["email"], "ada@example.com");
    assert_eq!(details["user"]["fullName"], user.full_name);
    assert_eq!(details["degraded"], false);

    let users = std::mem::replace(
        &mut t.users,
        crate::support::UserServiceStandIn::start().await,
    );
    users.stop().await;
    let (status, details) = json(t.get(&token, &path).await).await;
    assert_eq!(status, 200);
    assert_eq!(details["id"], created["id"]);
    assert!(details["user"].is_null());
    assert_eq!(details["degraded"], true);
}

#[tokio::test]
async fn only_the_owner_cancels_and_only_while_pending() {
    let t = BookingUnderTest::start().await;
    let (_, owner) = t.users.add_user("owner@example.com");
    let (_, other) = t.users.add_user("other@example.com");
    let (_, created) = json(t.create(&owner, booking_body("10")).await).await;
    let path = format!("/api/bookings/{}/cancel", created["id"].as_str().unwrap());

    assert_eq!(t.post_empty(&other, &path).await.status(), 404);
    let (status, cancelled) = json(t.post_empty(&owner, &path).await).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["cancellationReason"], "cancelled by the user");
    let (status, body) = json(t.post_empty(&owner, &path).await).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some(problem("booking-not-pending").as_str()))
    );
    let unknown = format!("/api/bookings/{}/cancel", Uuid::new_v4());
    assert_eq!(t.post_empty(&owner, &unknown).await.status(), 404);

    let events = eventually("BookingCancelled on the stream", WAIT, || async {
        let events = stream_events(&t.namespace, StreamKind::Bookings).await;
        (events.len() == 2).then_some(events)
    })
    .await;
    assert_eq!(events[1].event_type, "BookingCancelled");
    assert_eq!(events[1].data["bookingId"], created["id"]);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let t = BookingUnderTest::start().await;
    assert_eq!(
        t.http.get(t.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let (status, ready) = json(t.http.get(t.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{ready}");
    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("http_requests"));
}
