/*
 * Unit tests for kubeconfig (each credential form, contexts, relative paths,
 * token files that rotate, in-cluster config, the source order, errors) and
 * for kubeyaml (the pod template's YAML to JSON typing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../deployer/kubeconfig.h"
#include "../../deployer/kubeyaml.h"

static char tmpdir[256];

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *path_of(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rb-kubeconfig-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("RAINBOW_SA_DIR");
	return 0;
}

static int teardown(void **state)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static const char two_contexts[] = "apiVersion: v1\n"
				   "kind: Config\n"
				   "current-context: prod\n"
				   "clusters:\n"
				   "- name: c-prod\n"
				   "  cluster:\n"
				   "    server: https://10.0.0.1:6443/\n"
				   "    certificate-authority: certs/ca.pem\n"
				   "- name: c-kind\n"
				   "  cluster:\n"
				   "    server: https://127.0.0.1:40000\n"
				   "    insecure-skip-tls-verify: true\n"
				   "    tls-server-name: kubernetes\n"
				   "contexts:\n"
				   "- name: prod\n"
				   "  context: {cluster: c-prod, user: u-token, namespace: chat}\n"
				   "- name: kind\n"
				   "  context:\n"
				   "    cluster: c-kind\n"
				   "    user: u-cert\n"
				   "users:\n"
				   "- name: u-token\n"
				   "  user:\n"
				   "    token: \"abc.def\"\n"
				   "- name: u-cert\n"
				   "  user:\n"
				   "    client-certificate: /etc/k/cert.pem\n"
				   "    client-key: key.pem\n";

static void test_current_context_token(void **state)
{
	struct kubeconfig kc;
	char err[256] = "", want[512];

	write_file("config", two_contexts);
	assert_int_equal(kubeconfig_load_file(&kc, path_of("config"), NULL, err, sizeof(err)), 0);
	assert_string_equal(kc.context, "prod");
	assert_string_equal(kc.server, "https://10.0.0.1:6443"); /* trailing / gone */
	assert_string_equal(kc.namespace, "chat");
	snprintf(want, sizeof(want), "%s/certs/ca.pem", tmpdir); /* relative to the file */
	assert_string_equal(kc.ca.path, want);
	assert_null(kc.ca.data);
	assert_string_equal(kubeconfig_token(&kc), "abc.def");
	assert_false(kc.insecure);
	assert_null(kc.cert.path);
	kubeconfig_free(&kc);
}

static void test_explicit_context_cert_files(void **state)
{
	struct kubeconfig kc;
	char err[256] = "", want[512];

	write_file("config", two_contexts);
	assert_int_equal(kubeconfig_load_file(&kc, path_of("config"), "kind", err, sizeof(err)), 0);
	assert_string_equal(kc.context, "kind");
	assert_string_equal(kc.server, "https://127.0.0.1:40000");
	assert_true(kc.insecure);
	assert_string_equal(kc.tls_server_name, "kubernetes");
	assert_null(kc.namespace);
	assert_string_equal(kc.cert.path, "/etc/k/cert.pem"); /* absolute stays */
	snprintf(want, sizeof(want), "%s/key.pem", tmpdir);
	assert_string_equal(kc.key.path, want);
	assert_null(kubeconfig_token(&kc));
	kubeconfig_free(&kc);
}

static void test_data_fields(void **state)
{
	struct kubeconfig kc;
	char err[256] = "";
	/* base64 of "-----CA-----\n", "CERT" and "KEY!", the CA split over lines */
	static const char yaml[] = "current-context: x\n"
				   "clusters:\n"
				   "- name: c\n"
				   "  cluster:\n"
				   "    server: https://h:1\n"
				   "    certificate-authority: /ignored/when/data/is/set\n"
				   "    certificate-authority-data: LS0tLS1D\n"
				   "      QS0tLS0tCg==\n"
				   "contexts:\n"
				   "- name: x\n"
				   "  context: {cluster: c, user: u}\n"
				   "users:\n"
				   "- name: u\n"
				   "  user:\n"
				   "    client-certificate-data: Q0VSVA==\n"
				   "    client-key-data: S0VZIQ==\n";

	assert_int_equal(kubeconfig_load_string(&kc, yaml, strlen(yaml), "/d", NULL, "mem", err,
						sizeof(err)),
			 0);
	assert_null(kc.ca.path);
	assert_int_equal(kc.ca.len, 13);
	assert_memory_equal(kc.ca.data, "-----CA-----\n", 13);
	assert_int_equal(kc.cert.len, 4);
	assert_string_equal(kc.cert.data, "CERT");
	assert_string_equal(kc.key.data, "KEY!");
	kubeconfig_free(&kc);
}

static void test_token_file_rotates(void **state)
{
	struct kubeconfig kc;
	char err[256] = "", yaml[1024];
	struct timeval tv[2];

	write_file("tok", "first-token\n");
	snprintf(yaml, sizeof(yaml),
		 "current-context: x\n"
		 "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
		 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		 "users: [{name: u, user: {tokenFile: tok}}]\n");
	assert_int_equal(kubeconfig_load_string(&kc, yaml, strlen(yaml), tmpdir, NULL, "mem", err,
						sizeof(err)),
			 0);
	assert_string_equal(kubeconfig_token(&kc), "first-token");
	write_file("tok", "second-token\n");
	/* make sure the mtime differs even on a coarse clock */
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec += 5;
	tv[1] = tv[0];
	assert_int_equal(utimes(path_of("tok"), tv), 0);
	assert_string_equal(kubeconfig_token(&kc), "second-token");
	/* an empty file (mid-rotation) keeps the last token */
	write_file("tok", "");
	tv[0].tv_sec += 5;
	tv[1] = tv[0];
	assert_int_equal(utimes(path_of("tok"), tv), 0);
	assert_string_equal(kubeconfig_token(&kc), "second-token");
	kubeconfig_free(&kc);
}

static void expect_error(const char *yaml, const char *context, int code, const char *needle)
{
	struct kubeconfig kc;
	char err[512] = "";
	int rc = kubeconfig_load_string(&kc, yaml, strlen(yaml), "/d", context, "cfg", err,
					sizeof(err));

	if (rc != code || !strstr(err, needle))
		fail_msg("rc=%d (want %d) err=\"%s\" (want \"%s\")", rc, code, err, needle);
}

static void test_errors(void **state)
{
	static const char base[] = "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
				   "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
				   "users: [{name: u, user: {token: t}}]\n";
	char buf[1024];

	expect_error(base, NULL, -EINVAL, "no current-context");
	expect_error(base, "nope", -EINVAL, "context \"nope\" not found");
	expect_error("current-context: x\ncontexts: [{name: x, context: {cluster: zz, user: u}}]\n",
		     NULL, -EINVAL, "cluster \"zz\", which is not defined");
	snprintf(buf, sizeof(buf),
		 "current-context: x\n"
		 "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
		 "contexts: [{name: x, context: {cluster: c, user: ghost}}]\n");
	expect_error(buf, NULL, -EINVAL, "user \"ghost\", which is not defined");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'h:1'}}]\n"
		     "contexts: [{name: x, context: {cluster: c}}]\n",
		     NULL, -EINVAL, "no http(s):// server");
	/* Found by fuzz_kubeconfig: "https:///" used to become the server "https:". */
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'https:///'}}]\n"
		     "contexts: [{name: x, context: {cluster: c}}]\n",
		     NULL, -EINVAL, "no http(s):// server");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'http://'}}]\n"
		     "contexts: [{name: x, context: {cluster: c}}]\n",
		     NULL, -EINVAL, "no http(s):// server");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'https://h', "
		     "certificate-authority-data: '!!notbase64'}}]\n"
		     "contexts: [{name: x, context: {cluster: c}}]\n",
		     NULL, -EINVAL, "certificate-authority-data is not valid base64");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n"
		     "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		     "users: [{name: u, user: {client-certificate: /c.pem}}]\n",
		     NULL, -EINVAL, "without a key");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n"
		     "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		     "users: [{name: u, user: {exec: {command: aws}}}]\n",
		     NULL, -ENOTSUP, "exec or auth-provider plugin");
	expect_error("current-context: x\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n"
		     "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
		     "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n",
		     NULL, -ENOENT, "cannot read tokenFile");
	expect_error("a: [unclosed\n", NULL, -EINVAL, "YAML error at line");
	expect_error("- just\n- a list\n", NULL, -EINVAL, "not a kubeconfig");
}

static void test_missing_file(void **state)
{
	struct kubeconfig kc;
	char err[512] = "";

	assert_int_equal(
		kubeconfig_load_file(&kc, "/nonexistent/kubeconfig", NULL, err, sizeof(err)),
		-ENOENT);
	assert_non_null(strstr(err, "cannot read kubeconfig /nonexistent/kubeconfig"));
}

static void write_sa(const char *token)
{
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/sa", tmpdir);
	mkdir(dir, 0700);
	write_file("sa/ca.crt", "-----BEGIN CERTIFICATE-----\n");
	write_file("sa/namespace", "chat-ns\n");
	write_file("sa/token", token);
}

static void test_in_cluster(void **state)
{
	struct kubeconfig kc;
	char err[512] = "", dir[512];
	struct timeval tv[2];

	snprintf(dir, sizeof(dir), "%s/sa", tmpdir);
	assert_int_equal(kubeconfig_in_cluster(&kc, dir, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(kubeconfig_in_cluster(&kc, dir, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "ca.crt"));

	write_sa("sa-token-1\n");
	assert_int_equal(kubeconfig_in_cluster(&kc, dir, err, sizeof(err)), 0);
	assert_string_equal(kc.server, "https://10.96.0.1:443");
	assert_string_equal(kc.namespace, "chat-ns");
	assert_string_equal(kc.source, "in-cluster");
	assert_non_null(strstr(kc.ca.path, "/sa/ca.crt"));
	assert_string_equal(kubeconfig_token(&kc), "sa-token-1");
	/* the kubelet rotates the projected token: the next request sees the new one */
	write_file("sa/token", "sa-token-2");
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec += 5;
	tv[1] = tv[0];
	assert_int_equal(utimes(path_of("sa/token"), tv), 0);
	assert_string_equal(kubeconfig_token(&kc), "sa-token-2");
	kubeconfig_free(&kc);

	/* IPv6 service hosts are bracketed; the directory may come from the environment */
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	unsetenv("KUBERNETES_SERVICE_PORT");
	setenv("RAINBOW_SA_DIR", dir, 1);
	assert_int_equal(kubeconfig_in_cluster(&kc, NULL, err, sizeof(err)), 0);
	assert_string_equal(kc.server, "https://[fd00::1]:443");
	kubeconfig_free(&kc);
	unsetenv("RAINBOW_SA_DIR");
	unsetenv("KUBERNETES_SERVICE_HOST");
}

static void test_auto_order(void **state)
{
	struct kubeconfig kc;
	char err[512] = "", env[1100], dir[512];

	write_file("config", two_contexts);
	write_file("other", "current-context: o\n"
			    "clusters: [{name: c, cluster: {server: 'https://other:1'}}]\n"
			    "contexts: [{name: o, context: {cluster: c}}]\n");
	/* explicit path beats $KUBECONFIG */
	snprintf(env, sizeof(env), "%s:/nonexistent", path_of("other"));
	setenv("KUBECONFIG", env, 1);
	assert_int_equal(kubeconfig_auto(&kc, path_of("config"), NULL, err, sizeof(err)), 0);
	assert_string_equal(kc.server, "https://10.0.0.1:6443");
	kubeconfig_free(&kc);
	/* $KUBECONFIG: the first file of the list */
	assert_int_equal(kubeconfig_auto(&kc, NULL, NULL, err, sizeof(err)), 0);
	assert_string_equal(kc.server, "https://other:1");
	kubeconfig_free(&kc);
	/* a context only in a later file: said in the error */
	assert_int_equal(kubeconfig_auto(&kc, NULL, "kind", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "only the first file of $KUBECONFIG is read"));
	unsetenv("KUBECONFIG");
	/* in a pod: the service account */
	write_sa("tok");
	snprintf(dir, sizeof(dir), "%s/sa", tmpdir);
	setenv("RAINBOW_SA_DIR", dir, 1);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	assert_int_equal(kubeconfig_auto(&kc, NULL, NULL, err, sizeof(err)), 0);
	assert_string_equal(kc.source, "in-cluster");
	kubeconfig_free(&kc);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("RAINBOW_SA_DIR");
	/* otherwise ~/.kube/config */
	snprintf(dir, sizeof(dir), "%s/.kube", tmpdir);
	mkdir(dir, 0700);
	write_file(".kube/config", two_contexts);
	setenv("HOME", tmpdir, 1);
	assert_int_equal(kubeconfig_auto(&kc, NULL, "kind", err, sizeof(err)), 0);
	assert_string_equal(kc.context, "kind");
	kubeconfig_free(&kc);
}

static void test_b64(void **state)
{
	char *out = NULL;
	size_t n = 0;

	assert_int_equal(kubeconfig_b64decode("aGVs\nbG8=\n", &out, &n), 0);
	assert_int_equal(n, 5);
	assert_string_equal(out, "hello");
	free(out);
	assert_int_equal(kubeconfig_b64decode("aGVsbG8", &out, &n), -EINVAL);
	assert_int_equal(kubeconfig_b64decode("", &out, &n), -EINVAL);
	assert_int_equal(kubeconfig_b64decode("a*==", &out, &n), -EINVAL);
}

static void test_yaml_typing(void **state)
{
	char err[256] = "";
	static const char y[] = "spec:\n"
				"  replicas: 3\n"
				"  ratio: 0.5\n"
				"  on: true\n"
				"  off: false\n"
				"  none: null\n"
				"  tilde: ~\n"
				"  quoted: \"3\"\n"
				"  version: '1.0'\n"
				"  hex: 0x10\n"
				"  list: [a, 2]\n"
				"  text: |\n"
				"    line\n";
	json_t *j = kubeyaml_parse(y, strlen(y), err, sizeof(err)), *s;

	assert_non_null(j);
	s = json_object_get(j, "spec");
	assert_int_equal(json_integer_value(json_object_get(s, "replicas")), 3);
	assert_true(json_is_real(json_object_get(s, "ratio")));
	assert_true(json_is_true(json_object_get(s, "on")));
	assert_true(json_is_false(json_object_get(s, "off")));
	assert_true(json_is_null(json_object_get(s, "none")));
	assert_true(json_is_null(json_object_get(s, "tilde")));
	assert_string_equal(json_string_value(json_object_get(s, "quoted")), "3");
	assert_string_equal(json_string_value(json_object_get(s, "version")), "1.0");
	assert_string_equal(json_string_value(json_object_get(s, "hex")), "0x10");
	assert_int_equal(json_integer_value(json_array_get(json_object_get(s, "list"), 1)), 2);
	assert_string_equal(json_string_value(json_object_get(s, "text")), "line\n");
	json_decref(j);

	static const char alias[] = "a: &x [1]\nb: *x\n", multi[] = "a: 1\n---\nb: 2\n";

	assert_null(kubeyaml_parse(alias, strlen(alias), err, sizeof(err)));
	assert_non_null(strstr(err, "aliases"));
	assert_null(kubeyaml_parse(multi, strlen(multi), err, sizeof(err)));
	assert_non_null(strstr(err, "more than one YAML document"));
	assert_null(kubeyaml_parse("a: [\n", 5, err, sizeof(err)));
	assert_non_null(strstr(err, "YAML error"));

	/* Found by fuzz_kubeyaml: numbers JSON cannot hold failed with no message. */
	static const char big[] = "a: 1e400\nb: -inf\nc: +nan\nd: -1e-400\n";

	j = kubeyaml_parse(big, strlen(big), err, sizeof(err));
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "a")), "1e400");
	assert_string_equal(json_string_value(json_object_get(j, "b")), "-inf");
	assert_string_equal(json_string_value(json_object_get(j, "c")), "+nan");
	assert_true(json_is_real(json_object_get(j, "d")));
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_current_context_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_explicit_context_cert_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_file_rotates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_order, setup, teardown),
		cmocka_unit_test(test_b64),
		cmocka_unit_test_setup_teardown(test_yaml_typing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
