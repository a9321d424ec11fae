//! End-to-end tests: real HTTP, real SDK against moto, fakes only where moto has no API.

mod apono;
mod bad_input;
mod cloudformation;
mod cluster_events;
mod eks;
mod iam_enforcement;
mod local_run;
mod member_template;
mod network_info;
mod org_info;
mod packaging;
mod runtime;
mod stack_guard;
mod template_contract;
