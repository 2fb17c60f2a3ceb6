//! System tests live under `api/`; `src/bin` holds the server binary they start.
