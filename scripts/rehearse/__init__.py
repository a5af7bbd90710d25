"""Deploy rehearsal of template.yaml on moto (`make rehearse`; README "Deploy rehearsal").

`sam package` into a fresh moto's S3, the SAM transform (samtranslator, offline), the template prepared
for moto (prepare.py), create_stack until CREATE_COMPLETE, then every logical id, Output and the
properties moto keeps compared with the template (compare.py); cfn-lint with the serverless rules on
the translated template (lint.py). What moto cannot check is listed in one place, gaps.py, and printed
in every report (artifacts/rehearsal/report.md). NOT FOR CLINICAL USE.
"""
