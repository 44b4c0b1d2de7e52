// The UNIT driver's rule for the njs peer (`js_set $site unit.site`): the integer in `uid`
// (spaces and tabs around it ignored) selects a site: 1-100 -> s1, 101-200 -> s2, any other
// integer -> s3 (i64 approximated as at most 18 digits); anything else -> all_sites.
const UID = /^[ \t]*([+-]?)([0-9]{1,18})[ \t]*$/;

function site(r) {
    const uid = r.headersIn.uid;
    const m = uid === undefined ? null : UID.exec(uid);
    if (m === null) {
        return "all_sites";
    }
    const n = Number(m[2]);
    if (m[1] === "-") {
        return "s3";
    }
    if (n >= 1 && n <= 100) {
        return "s1";
    }
    if (n >= 101 && n <= 200) {
        return "s2";
    }
    return "s3";
}

export default { site };
