-- Prosody for bench/compare_servers.sh: Debian's stock
-- /etc/prosody/prosody.cfg.lua (Prosody 0.12.3) with the same modules and
-- limits, changed only where the comparison needs it (each change marked):
-- - c2s on 127.0.0.1 on an unused port (@PORT@), STARTTLS offered with the
--   certificate all three servers use, not required, PLAIN allowed without
--   TLS (chatd --allow-plaintext-auth, ejabberd the same); no s2s, HTTP or
--   direct-TLS ports; listen backlog 4096 as chatd's; epoll backend;
-- - accounts with plain password storage (authentication "internal_plain";
--   stock "internal_hashed") in the stock file storage, in the run's
--   directory, written before the measured process starts;
-- - log level warn, to a file in the run's directory; not daemonized.
-- @DIR@, @PORT@, @CERT@, @KEY@ are filled in by bench/lib/compare.py.
admins = { }
modules_enabled = {
		"disco";
		"roster";
		"saslauth";
		"tls";
		"blocklist";
		"bookmarks";
		"carbons";
		"dialback";
		"limits";
		"pep";
		"private";
		"smacks";
		"vcard4";
		"vcard_legacy";
		"csi_simple";
		"invites";
		"invites_adhoc";
		"invites_register";
		"ping";
		"register";
		"time";
		"uptime";
		"version";
		"admin_adhoc";
		"admin_shell";
		"posix";
}
modules_disabled = {
}
s2s_secure_auth = true
limits = {
	c2s = {
		rate = "10kb/s";
	};
	s2sin = {
		rate = "30kb/s";
	};
}
authentication = "internal_plain"        -- changed: stock internal_hashed
archive_expires_after = "1w"
pidfile = "@DIR@/prosody.pid"            -- changed: the run's directory
data_path = "@DIR@/data"                 -- changed
daemonize = false                        -- changed
log = { warn = "@DIR@/prosody.log" }     -- changed: stock info to /var/log
network_backend = "epoll"                -- changed: stock select
network_settings = { tcp_backlog = 4096 } -- changed: stock 128
interfaces = { "127.0.0.1" }             -- changed: stock every address
local_interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }                   -- changed: stock 5222
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }
s2s_interfaces = { }
http_ports = { }
https_ports = { }
admin_socket = "@DIR@/admin.sock"
c2s_require_encryption = false           -- changed: stock true
allow_unencrypted_plain_auth = true      -- changed: stock false
certificates = "@DIR@/certs"
ssl = { certificate = "@CERT@"; key = "@KEY@"; }
VirtualHost "localhost"
