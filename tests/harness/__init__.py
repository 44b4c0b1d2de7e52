"""Test harness for mosn-extension: backends, host processes (Envoy / Nginx via mosn-ext),
the MOSN test config builder, a raw HTTP/1.1 client and the access-log parser."""
