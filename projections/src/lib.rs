//! Read models and the queries the API serves, built from the event stream by projection
//! workers. There are none yet: the API's GET routes fold aggregates from the event store.
