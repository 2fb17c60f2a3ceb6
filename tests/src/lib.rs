//! System tests live under api/.
