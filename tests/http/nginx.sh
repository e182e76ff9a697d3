# SPDX-License-Identifier: Apache-2.0
# Start nginx on 127.0.0.1 for a test (sourced): nginx_start ROOT DIR serves ROOT from a
# prefix of its own under DIR, on a free port (PORT, URL=http://127.0.0.1:$PORT), with the
# locations the HTTP tests use, and with NGINX_CERT/NGINX_KEY set over HTTPS too (SPORT,
# SURL); nginx_stop (also run from the caller's EXIT trap) stops it.
# Exits 77 when nginx is not installed.
NGINX=${NGINX:-$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)}
[ -n "$NGINX" ] || { echo "SKIP: nginx not found"; exit 77; }
NGINX_PID=

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

nginx_conf() {
	local root=$1 pfx=$2
	# Run as root, nginx's workers would switch to nobody, who cannot read the test's
	# private temporary directory.
	[ "$(id -u)" -ne 0 ] || echo "user root;"
	cat <<CONF
daemon off;
worker_processes 2;
pid $pfx/nginx.pid;
error_log $pfx/error.log warn;
events { worker_connections 512; }
http {
	log_format t '\$host \$request_method \$uri \$status \$body_bytes_sent "\$http_range" "\$http_authorization" "\$http_if_match" \$server_protocol';
	access_log $pfx/access.log t;
	client_body_temp_path $pfx/tmp/body;
	proxy_temp_path $pfx/tmp/proxy;
	fastcgi_temp_path $pfx/tmp/fastcgi;
	uwsgi_temp_path $pfx/tmp/uwsgi;
	scgi_temp_path $pfx/tmp/scgi;
	default_type application/octet-stream;
	sendfile on;
	# tcp_nopush (TCP_CORK) holds the tail of a response that is just over one loopback
	# segment (64 KiB) until the client's delayed ACK, 40 ms later: off, or small-range
	# tests crawl.
	tcp_nopush off;
	keepalive_requests 10000;
	server {
		listen 127.0.0.1:$PORT;
		root $root;
		# A server that ignores Range (answers 200 with the whole object).
		location /norange/ { alias $root/; max_ranges 0; }
		# Redirects: to another host name (localhost), on the same host, in a loop.
		location /redir/ { rewrite ^/redir/(.*)\$ http://localhost:$PORT/\$1 redirect; }
		location /same/ { rewrite ^/same/(.*)\$ /\$1 redirect; }
		location /loop/ { rewrite ^/loop/(.*)\$ /loop/\$1 redirect; }
		# A bearer token is needed.
		location /secret/ {
			alias $root/;
			if (\$http_authorization != "Bearer sekrit") { return 403; }
		}
		# Slow answers (the cache's crash and concurrency tests stop a load midway).
		location /slow/ { alias $root/; limit_rate 4m; }
		# S3 buckets in eu-central-1 answering requests signed for another region as AWS
		# does (tests/s3/test_s3.sh: region discovery; the paths are path-style
		# /BUCKET/key under the root): 400 AuthorizationHeaderMalformed naming the region,
		# or 301 PermanentRedirect naming the regional endpoint; x-amz-bucket-region on both.
		location /euwrong/ {
			if (\$http_authorization !~ "/eu-central-1/s3/aws4_request") { return 420; }
			error_page 420 =400 @authmalformed;
		}
		location /eumoved/ {
			if (\$http_authorization !~ "/eu-central-1/s3/aws4_request") { return 421; }
			error_page 421 =301 @permredirect;
		}
		location @authmalformed {
			add_header x-amz-bucket-region eu-central-1 always;
			default_type application/xml;
			return 200 '<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region is wrong; expecting eu-central-1</Message><Region>eu-central-1</Region><RequestId>R1</RequestId></Error>';
		}
		location @permredirect {
			add_header x-amz-bucket-region eu-central-1 always;
			default_type application/xml;
			return 200 '<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>eumoved.s3.eu-central-1.amazonaws.com</Endpoint><Bucket>eumoved</Bucket><RequestId>R2</RequestId></Error>';
		}
		location /forbidden/ { return 403; }
		location /unauthorized/ { return 401; }
		location /broken/ { return 500; }
		# The Hugging Face hub's shape: /org/repo/resolve/REV/path redirects to storage on
		# another host (localhost), as the hub redirects to its CDN.
		location /hf/ {
			rewrite ^/hf/org/model/resolve/main/(.*)\$ http://localhost:$PORT/\$1 redirect;
			rewrite ^/hf/org/model/resolve/v1/(.*)\$ /\$1 redirect;
			return 404;
		}
	}
CONF
	if [ -n "${NGINX_CERT:-}" ]; then
		# HTTPS (HTTP/2 offered through ALPN) with the test's own certificate.
		cat <<CONF
	server {
		listen 127.0.0.1:$SPORT ssl http2;
		ssl_certificate $NGINX_CERT;
		ssl_certificate_key $NGINX_KEY;
		root $root;
	}
CONF
	fi
	echo "}"
}

nginx_start() {
	local root=$1 dir=$2 i
	NGINX_PFX=$dir/nginx
	mkdir -p "$NGINX_PFX/tmp"
	for i in 1 2 3 4 5; do
		PORT=$(free_port)
		SPORT=$(free_port)
		nginx_conf "$root" "$NGINX_PFX" >"$NGINX_PFX/nginx.conf"
		: >"$NGINX_PFX/error.log"
		"$NGINX" -p "$NGINX_PFX" -c "$NGINX_PFX/nginx.conf" -e "$NGINX_PFX/error.log" \
			2>>"$NGINX_PFX/error.log" &
		NGINX_PID=$!
		# Up when it answers (bounded: 5 s).
		for _ in $(seq 50); do
			if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/"; then
				URL=http://127.0.0.1:$PORT
				SURL=https://127.0.0.1:$SPORT
				return 0
			fi
			kill -0 "$NGINX_PID" 2>/dev/null || break
			sleep 0.1
		done
		nginx_stop
	done
	echo "FAIL: nginx did not start: $(tail -5 "$NGINX_PFX/error.log")"
	exit 1
}

nginx_stop() {
	if [ -n "$NGINX_PID" ]; then
		# Each step may fail (nginx already gone; wait reports its signal): never an
		# error, as callers under `set -e` (tools/demo.sh) would stop on it.
		kill "$NGINX_PID" 2>/dev/null || true
		# Bounded wait for the master and its workers.
		for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$NGINX_PID" 2>/dev/null || true
		wait "$NGINX_PID" 2>/dev/null || true
		NGINX_PID=
	fi
}
