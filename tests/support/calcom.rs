//! A Cal.com fake speaking API v2 that remembers what it was asked: bookings created are
//! listed, fetched and cancelled; every request stays recorded, so a test can tell whether a
//! side effect happened twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The event type every test salon's service is mapped to.
pub(crate) const EVENT_TYPE: i64 = 4711;

/// The metadata key that carries bookingd's booking id.
const BOOKING_ID_KEY: &str = "bookingd_booking_id";

/// A Cal.com booking as API v2 returns it, at the start the request asked for.
pub(crate) fn cal_booking(uid: &str, start: &str, status: &str, metadata: &Value) -> Value {
    json!({
        "status": "success",
        "data": {
            "id": 1, "uid": uid, "title": "Haircut", "status": status,
            "start": start, "end": start, "duration": 30,
            "eventTypeId": EVENT_TYPE, "eventType": { "id": EVENT_TYPE, "slug": "haircut" },
            "metadata": metadata, "attendees": [], "guests": [],
            "rescheduledFromUid": null, "rescheduledToUid": null,
        }
    })
}

/// Cal.com's answer for a uid it does not know.
fn not_found(uid: &str) -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({
        "status": "error",
        "error": { "code": "NotFoundException", "message": format!("Booking with uid={uid} was not found") }
    }))
}

/// The fake and the bookings it holds (the `data` of each, in creation order).
#[derive(Debug)]
pub(crate) struct StatefulCalcom {
    /// The server.
    pub(crate) server: MockServer,
    /// The bookings created.
    pub(crate) made: Arc<Mutex<Vec<Value>>>,
}

impl StatefulCalcom {
    /// Starts the fake; creating answers after `delay`.
    pub(crate) async fn start(delay: Duration) -> Self {
        let server = MockServer::start().await;
        let made: Arc<Mutex<Vec<Value>>> = Arc::default();
        let store = made.clone();
        Mock::given(method("POST"))
            .and(path("/v2/bookings"))
            .respond_with(move |request: &Request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let mut made = store.lock().unwrap();
                let uid = format!("cal-{}", made.len() + 1);
                let start = body["start"].as_str().unwrap_or_default();
                let booking = cal_booking(&uid, start, "accepted", &body["metadata"]);
                made.push(booking["data"].clone());
                ResponseTemplate::new(201)
                    .set_body_json(booking)
                    .set_delay(delay)
            })
            .mount(&server)
            .await;
        let listed = made.clone();
        Mock::given(method("GET"))
            .and(path("/v2/bookings"))
            .respond_with(move |_: &Request| {
                let data = listed.lock().unwrap().clone();
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "status": "success", "data": data, "pagination": {} }))
            })
            .mount(&server)
            .await;
        let known = made.clone();
        Mock::given(method("GET"))
            .and(path_regex(r"^/v2/bookings/[^/]+$"))
            .respond_with(move |request: &Request| {
                let uid = request.url.path().split('/').nth(3).unwrap_or_default();
                let made = known.lock().unwrap();
                match made.iter().find(|b| b["uid"] == uid) {
                    Some(booking) => ResponseTemplate::new(200)
                        .set_body_json(json!({ "status": "success", "data": booking })),
                    None => not_found(uid),
                }
            })
            .mount(&server)
            .await;
        let held = made.clone();
        Mock::given(method("POST"))
            .and(path_regex(r"^/v2/bookings/[^/]+/cancel$"))
            .respond_with(move |request: &Request| {
                let uid = request.url.path().split('/').nth(3).unwrap_or_default();
                let mut made = held.lock().unwrap();
                match made.iter_mut().find(|b| b["uid"] == uid) {
                    Some(booking) => {
                        booking["status"] = json!("cancelled");
                        ResponseTemplate::new(200)
                            .set_body_json(json!({ "status": "success", "data": booking }))
                    }
                    None => not_found(uid),
                }
            })
            .mount(&server)
            .await;
        Self { server, made }
    }

    /// The base URL.
    pub(crate) fn uri(&self) -> String {
        self.server.uri()
    }

    /// Per bookingd booking id: how many times Cal.com was asked to create it.
    pub(crate) async fn creates_per_booking(&self) -> HashMap<String, usize> {
        let mut creates = HashMap::new();
        for request in self.requests("POST", "/v2/bookings").await {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let id = body["metadata"][BOOKING_ID_KEY]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *creates.entry(id).or_default() += 1;
        }
        creates
    }

    /// Per bookingd booking id: how many times its Cal.com booking was asked to be cancelled.
    pub(crate) async fn cancels_per_booking(&self) -> HashMap<String, usize> {
        let owner: HashMap<String, String> = self
            .made
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                let uid = b["uid"].as_str().unwrap_or_default().to_owned();
                let id = b["metadata"][BOOKING_ID_KEY].as_str().unwrap_or_default();
                (uid, id.to_owned())
            })
            .collect();
        let mut cancels = HashMap::new();
        for request in self.server.received_requests().await.unwrap_or_default() {
            let route = request.url.path();
            if request.method.as_str() == "POST" && route.ends_with("/cancel") {
                let uid = route.split('/').nth(3).unwrap_or_default();
                let id = owner.get(uid).cloned().unwrap_or_default();
                *cancels.entry(id).or_default() += 1;
            }
        }
        cancels
    }

    async fn requests(&self, verb: &str, route: &str) -> Vec<Request> {
        let all = self.server.received_requests().await.unwrap_or_default();
        all.into_iter()
            .filter(|r| r.method.as_str() == verb && r.url.path() == route)
            .collect()
    }
}
