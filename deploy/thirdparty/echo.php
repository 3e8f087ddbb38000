<?php
// The request as an application that reads headers the CGI way sees it:
// PHP, like CGI, WSGI and Rack, names each header HTTP_<NAME> with '-'
// turned into '_' and letters upper-cased, so X-Groups, x-groups and
// X_Groups are one variable (the last one sent wins). Run by
// thirdparty.StartPHPEcho with PHP's built-in server:
//
//   GET /healthz            "ok"
//   any method, any path    JSON: method, uri, every HTTP_* variable,
//                           REMOTE_ADDR, the body's length and SHA-256;
//                           the response header X-Samlha-User repeats
//                           HTTP_X_SAMLHA_USER (a login's success check)
//   ?gate=NAME              text: "first\n" at once, then waits until the
//                           file NAME exists in $SAMLHA_ECHO_GATES (at
//                           most 30 s), then "opened\n" (or
//                           "gate-timeout\n"): a stream that cannot end
//                           before its first line has been read
declare(strict_types=1);

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?: '/';
if ($path === '/healthz') {
    header('Content-Type: text/plain');
    echo "ok\n";
    return;
}

parse_str($_SERVER['QUERY_STRING'] ?? '', $query);
if (isset($query['gate']) && is_string($query['gate'])) {
    $gate = rtrim((string) getenv('SAMLHA_ECHO_GATES'), '/') . '/' . basename($query['gate']);
    header('Content-Type: text/plain');
    header('Cache-Control: no-store');
    echo "first\n";
    flush();
    $deadline = microtime(true) + 30;
    while (!file_exists($gate) && microtime(true) < $deadline) {
        usleep(10000);
    }
    echo file_exists($gate) ? "opened\n" : "gate-timeout\n";
    return;
}

$vars = [];
foreach ($_SERVER as $name => $value) {
    if (strncmp($name, 'HTTP_', 5) === 0) {
        $vars[$name] = $value;
    }
}
ksort($vars);

$in = fopen('php://input', 'rb');
$length = 0;
$hash = hash_init('sha256');
while ($in !== false && !feof($in)) {
    $chunk = fread($in, 1 << 16);
    if ($chunk === false || $chunk === '') {
        break;
    }
    $length += strlen($chunk);
    hash_update($hash, $chunk);
}

if (isset($vars['HTTP_X_SAMLHA_USER'])) {
    header('X-Samlha-User: ' . $vars['HTTP_X_SAMLHA_USER']);
}
header('Content-Type: application/json');
header('Cache-Control: no-store');
echo json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'uri' => $_SERVER['REQUEST_URI'],
    'vars' => (object) $vars,
    'remote_addr' => $_SERVER['REMOTE_ADDR'] ?? '',
    'body_length' => $length,
    'body_sha256' => hash_final($hash),
], JSON_UNESCAPED_SLASHES), "\n";
