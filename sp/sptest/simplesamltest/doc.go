// Package simplesamltest starts SimpleSAMLphp, as Debian packages it
// (simplesamlphp 1.19, with php-cli and php-xml), as a SAML 2.0 IdP on
// loopback for one test: an IdP samlha did not write, to prove that samlsp
// works with one.
//
// Each IdP is its own process (`php -S 127.0.0.1:PORT -t
// /usr/share/simplesamlphp/www`, on a port from localproc.Port) with its own
// configuration directory under the test's temporary directory, selected by
// SIMPLESAMLPHP_CONFIG_DIR: nothing under /etc/simplesamlphp is read or
// written, so tests run in parallel. The configuration is ours, small, and
// kept as JSON that thin PHP files decode:
//
//   - a fresh RSA signing key and certificate, once per test process;
//   - the exampleauth:UserPass source "example-userpass" with the users of
//     Config.Users (default: alice / alice-password and bob / bob-password,
//     each with uid, mail and eduPersonAffiliation);
//   - PHP's own session files (store.type phpsession) in the temporary
//     directory: no memcache, no database;
//   - NameID generators for the transient, persistent (hashed uid),
//     emailAddress (mail) and unspecified (uid) formats, so the IdP can answer
//     whichever format an AuthnRequest asks for;
//   - SimpleSAMLphp's log (level debug) and PHP's errors on the server's
//     stderr, which goes to a file quoted in the test log when the test
//     fails.
//
// An SP is registered from its metadata XML (RegisterSP), read by
// SimpleSAMLphp's own metadata parser, as an operator importing it would,
// with the per-SP settings of SPConfig (validate.authnrequest, sign.logout,
// assertion.encryption, NameIDFormat, response and assertion signing) on
// top.
//
//	idp := simplesamltest.Start(t, simplesamltest.Config{})
//	// start samlsp with --idp-metadata-url idp.MetadataURL, then:
//	idp.RegisterSP(t, spMetadataXML, simplesamltest.SPConfig{EncryptAssertion: true})
//	res := browser.Login(ctx, spURL+"/app", "alice", "alice-password")
//
// The scripted browser of package sptest logs in at SimpleSAMLphp's login
// form (inputs username, password and the hidden AuthState) and submits its
// HTTP-POST binding pages.
//
// Without php or SimpleSAMLphp, Start skips the test with the reason and the
// Debian packages to install; under CI=true it fails it instead.
package simplesamltest
