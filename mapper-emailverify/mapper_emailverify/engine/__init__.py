"""The verification library: syntax, lists, DNS, SMTP and the EmailVerify.io backend behind
`Verifier`.

It never imports singer_sdk or the Singer side (`mapper_emailverify.stream_map`); a test checks
it. The package itself imports nothing, so importing one module (say `config`) does not load all.
"""
