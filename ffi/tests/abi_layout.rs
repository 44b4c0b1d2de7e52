//! The C ABI's `#[repr(C)]` layouts and constants against `ffi/abi-layout.txt`.
//!
//! Hosts allocate these structs and compare `MOSN_EXT_ABI_VERSION` at load. A layout or
//! constant that changes while the version stays the same would let an old host read
//! garbage, so any difference here fails: bump `MOSN_EXT_ABI_VERSION` and update the file
//! (the failure prints its new content).

use mosn_extension_ffi::*;
use std::mem::{align_of, offset_of, size_of};

macro_rules! layout {
    ($out:ident, $t:ty { $($f:ident),* }) => {{
        $out.push(format!("struct {} size {} align {}", stringify!($t), size_of::<$t>(), align_of::<$t>()));
        $( $out.push(format!("  {} @{}", stringify!($f), offset_of!($t, $f))); )*
    }};
}

macro_rules! constants {
    ($out:ident, $($c:ident),*) => {{
        $( $out.push(format!("const {} = {}", stringify!($c), $c)); )*
    }};
}

fn current() -> String {
    let mut out = vec![format!("version {MOSN_EXT_ABI_VERSION}")];
    layout!(out, mosn_ext_bytes { ptr, len });
    layout!(out, mosn_ext_header { name, value });
    layout!(out, mosn_ext_message { headers, headers_len, body, trailers, trailers_len });
    layout!(out, mosn_ext_header_mutation { op, name, value });
    layout!(out, mosn_ext_action { kind, status, mutations, mutations_len, reply_headers, reply_headers_len, reply_body, details });
    layout!(
        out,
        mosn_ext_route {
            cluster,
            max_attempts,
            timeout_ms,
            per_try_timeout_ms,
            connect_timeout_ms,
            retry_on,
            retry_status_codes,
            retry_status_codes_len
        }
    );
    layout!(out, mosn_ext_sockaddr { len, bytes });
    layout!(out, mosn_ext_upstream { cluster, address, sockaddr, host_index, attempt, idle_timeout_ms });
    layout!(
        out,
        mosn_ext_cluster_stats {
            name,
            hosts,
            healthy_hosts,
            rq_active,
            rq_total,
            retry_active,
            retry_total,
            rq_overflow,
            retry_overflow,
            cx_overflow,
            no_healthy,
            subsets_fallback,
            subsets_created
        }
    );
    layout!(
        out,
        mosn_ext_host_stats { address, health_flags, rq_active, rq_total, rq_failed, rq_error_response, ejections, health_changes }
    );
    constants!(
        out,
        MOSN_EXT_CONTINUE,
        MOSN_EXT_WAIT,
        MOSN_EXT_LOCAL_REPLY,
        MOSN_EXT_BUFFER_BODY,
        MOSN_EXT_HEADER_SET,
        MOSN_EXT_HEADER_ADD,
        MOSN_EXT_HEADER_REMOVE,
        MOSN_EXT_HOST_OK,
        MOSN_EXT_HOST_NOT_ROUTED,
        MOSN_EXT_HOST_NONE_HEALTHY,
        MOSN_EXT_HOST_OVERFLOW,
        MOSN_EXT_HOST_ERROR,
        MOSN_EXT_HEALTH_FAILED_ACTIVE_HC,
        MOSN_EXT_HEALTH_FAILED_OUTLIER_CHECK,
        MOSN_EXT_OUTCOME_RESPONSE,
        MOSN_EXT_OUTCOME_CONNECT_FAILURE,
        MOSN_EXT_OUTCOME_TIMEOUT,
        MOSN_EXT_OUTCOME_RESET,
        MOSN_EXT_OUTCOME_OVERFLOW,
        MOSN_EXT_INFO_CLUSTER,
        MOSN_EXT_INFO_UPSTREAM_HOST,
        MOSN_EXT_INFO_METADATA
    );
    out.join("\n") + "\n"
}

#[test]
fn layouts_change_only_with_the_abi_version() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/abi-layout.txt");
    let want = std::fs::read_to_string(path).unwrap_or_default();
    let have = current();
    if want == have {
        return;
    }
    let old_version = want.lines().next().unwrap_or("version ?").trim_start_matches("version ").to_string();
    let layouts = |s: &str| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    let hint = if layouts(&want) != layouts(&have) && old_version == MOSN_EXT_ABI_VERSION.to_string() {
        "the ABI changed but MOSN_EXT_ABI_VERSION did not: bump it in ffi/src/lib.rs"
    } else {
        "update ffi/abi-layout.txt"
    };
    panic!("{hint}; then ffi/abi-layout.txt must read:\n{have}");
}
