# Varnish in front of Moat's public listener: caches GET answers to
# anonymous queries as Moat's headers say (Cache-Control max-age, grace
# from stale-while-revalidate, ETag revalidation), tags each with the
# records it holds (Surrogate-Key, for the xkey vmod), and takes Moat's
# purges by those keys, from the addresses in `purgers` only.
#
# Needs Varnish 6 or later and the xkey vmod (Debian/Ubuntu:
# `apt-get install varnish varnish-modules`). Point Moat at it with
#
#   [[edge.purge]]
#   kind = "varnish"
#   url = "http://127.0.0.1:6081"
#
# A purge is `PURGE /` with the keys, space-separated, in `xkey-purge`
# (or `xkey-softpurge`, with `soft = true`).
vcl 4.1;

import std;
import xkey;

# Moat's public listener. `.host` and `.port` stay on lines of their own,
# so a deployment (or a test) can point them elsewhere.
backend moat {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    .first_byte_timeout = 30s;
}

# Who may purge: Moat's replicas. Add their addresses.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (req.http.xkey-purge) {
            set req.http.x-purged = xkey.purge(req.http.xkey-purge);
        } elsif (req.http.xkey-softpurge) {
            set req.http.x-purged = xkey.softpurge(req.http.xkey-softpurge);
        } else {
            return (synth(400, "Send the keys in xkey-purge or xkey-softpurge"));
        }
        return (synth(200, "Purged " + req.http.x-purged + " objects"));
    }
    # Only queries over GET are shared; POSTs (mutations, checkout) and
    # signed-in requests always reach Moat.
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    if (req.http.Authorization) {
        return (pass);
    }
    # Moat's answers do not depend on cookies.
    unset req.http.Cookie;
    return (hash);
}

sub vcl_backend_response {
    # xkey indexes an object by the keys in its `xkey` header.
    if (beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    # Moat's stale-if-error: keep the object that long for revalidation.
    if (beresp.http.Cache-Control ~ "stale-if-error=[0-9]+") {
        set beresp.keep = std.duration(
            regsub(beresp.http.Cache-Control, ".*stale-if-error=([0-9]+).*", "\1s"), 0s);
    }
}

sub vcl_deliver {
    # The keys are for purges, not for browsers.
    unset resp.http.xkey;
    unset resp.http.Surrogate-Key;
    unset resp.http.Cache-Tag;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
