<?php
// Reads SAML metadata with SimpleSAMLphp's own parser, as an operator
// importing an SP would, and prints what it found as JSON:
//   {"schema": true or the schema error, "entities": [getMetadata20SP() of each SP]}
// Usage: php spmeta.php SIMPLESAMLPHP_ROOT METADATA_FILE
// (SIMPLESAMLPHP_CONFIG_DIR names the configuration.)
// An exception or an unreadable file exits 1 with the message on stderr.
require $argv[1] . '/lib/_autoload.php';

try {
    $xml = file_get_contents($argv[2]);
    if ($xml === false) {
        throw new Exception('cannot read ' . $argv[2]);
    }
    $doc = \SAML2\DOMDocumentFactory::fromString($xml);
    $schema = \SimpleSAML\Utils\XML::isValid($doc, 'saml-schema-metadata-2.0.xsd');
    $entities = [];
    foreach (\SimpleSAML\Metadata\SAMLParser::parseDescriptorsElement($doc->documentElement) as $entity) {
        $sp = $entity->getMetadata20SP();
        if ($sp !== null) {
            $entities[] = $sp;
        }
    }
    echo json_encode(['schema' => $schema, 'entities' => $entities], JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
} catch (Throwable $e) {
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
