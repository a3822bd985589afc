PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The browser tests drive Debian's chromium; Playwright downloads no browser.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install run test lint package rehearse deploy stripe-ips fuzz sweep catch-up advance replay redrive bench soak clean chromium

# A virtualenv with the pinned requirements, rebuilt when they change.
$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python -m local.run

# Two processes, as CI has two cores: each takes whole files (their
# module fixtures, the browser tests' stack, stay in one); about 8 minutes.
test: $(INSTALLED) chromium lint
	BROWSER_TESTS=required $(BIN)/python -m pytest -n 2 --dist loadfile

# Debian's chromium, installed when missing (CI runs as root on Debian).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests (a minute or two, once)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium >/dev/null || exit 1; \
	  else \
	    echo "The browser tests need Chromium at $(CHROMIUM): install Debian's chromium" \
	         "(sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; \
	  fi; \
	fi

# The stage packaged and deployed; every stage in .chalice/config.json is linted.
STAGE ?= dev
STAGES := dev prod
AWS ?= aws
STACK ?= stripe-connector-$(STAGE)

# build/<stage>/: Chalice's template with infra/template.yaml merged in
# (sam.yaml) and the functions' deployment.zip, with bytecode for the
# Lambda's Python beside every module (infra/package.py). No AWS account is
# asked: Chalice wants a region only to name the partition, so any will do.
package: $(INSTALLED)
	rm -rf build/$(STAGE)
	$(BIN)/python -m infra.package --stage $(STAGE)

lint: $(INSTALLED)
	for stage in $(STAGES); do $(MAKE) --no-print-directory package STAGE=$$stage || exit 1; done
	$(BIN)/cfn-lint $(foreach stage,$(STAGES),build/$(stage)/sam.yaml)

# The stage's package as CloudFormation gets it, checked offline: SAM's
# transform (aws-sam-translator), cfn-lint on the CloudFormation it makes
# (build/<stage>/cloudformation.json), one API stage, the functions' settings,
# schedules, references, placeholders, the web ACL (infra/rehearse.py);
# then the stack created in moto's CloudFormation and each function run from
# the unzipped deployment.zip in a bare python3.11 against it, under
# AWS-shaped events (infra/deployed.py, infra/lambda_service.py). The last
# step before make deploy.
# Prod fails while its config holds a placeholder; ALLOW_PLACEHOLDERS=1
# rehearses the rest. make test runs tests/rehearsal.
rehearse: package
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/python -m infra.rehearse --stage $(STAGE) --deployed \
		$(if $(ALLOW_PLACEHOLDERS),--allow-placeholders)

# Uploads the artifact to DEPLOY_BUCKET and deploys the stack (docs/operating.md,
# Deploying). Needs the AWS CLI and credentials for the stage's account.
deploy: package
	@test -n "$(DEPLOY_BUCKET)" || { echo "make deploy needs DEPLOY_BUCKET=<an S3 bucket for the artifact>"; exit 2; }
	$(AWS) cloudformation package --template-file build/$(STAGE)/sam.yaml --s3-bucket $(DEPLOY_BUCKET) \
		--s3-prefix stripe-connector/$(STAGE) --output-template-file build/$(STAGE)/packaged.yaml
	$(AWS) cloudformation deploy --template-file build/$(STAGE)/packaged.yaml --stack-name $(STACK) \
		--s3-bucket $(DEPLOY_BUCKET) --s3-prefix stripe-connector/$(STAGE) \
		--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
		--parameter-overrides Stage=$(STAGE) $(if $(ALARM_EMAIL),AlarmEmail=$(ALARM_EMAIL)) \
		$(if $(STRIPE_EVENT_SOURCE),StripeEventSource=$(STRIPE_EVENT_SOURCE)) \
		$(if $(IP_RATE_LIMIT),IpRateLimit=$(IP_RATE_LIMIT))

# Stripe's webhook addresses (infra/stripe_webhook_ips.json, which the web
# ACL lets reach the webhook) downloaded again, checked, and rewritten only
# when valid and changed (infra/stripe_ips.py). Before a deploy.
stripe-ips: $(INSTALLED)
	$(BIN)/python -m infra.stripe_ips --refresh

# schemathesis against openapi.yaml and a local stack of its own, on free ports.
fuzz: $(INSTALLED)
	$(BIN)/python -m fuzz

# Runs expire_access once against the local stack `make run` is serving.
sweep: $(INSTALLED)
	$(BIN)/python -m local.sweep

# Runs catch_up once against the local stack `make run` is serving.
catch-up: $(INSTALLED)
	$(BIN)/python -m local.catch_up

# Moves the local stack's clock ahead (DAYS=…, HOURS=…, or both): the Stripe
# sandbox's, which the API and the scheduled functions read. What falls due
# meanwhile (renewals, trial ends, cancellations, failed renewals) happens,
# each with its webhooks (local/advance.py).
advance: $(INSTALLED)
	@test -n "$(DAYS)$(HOURS)" || { echo "make advance needs DAYS=… or HOURS=… (or both)"; exit 2; }
	$(BIN)/python -m local.advance $(if $(DAYS),--days "$(DAYS)") $(if $(HOURS),--hours "$(HOURS)")

# Handles one Stripe event again, read from the sandbox (or Stripe), against
# the local stack `make run` is serving (infra/replay.py).
replay: $(INSTALLED)
	@test -n "$(EVENT)" -a -n "$(ACCOUNT)" || { echo "make replay needs EVENT=evt_… ACCOUNT=acct_…"; exit 2; }
	$(BIN)/python -m local.replay "$(EVENT)" --account "$(ACCOUNT)"

# Moves a dead-letter queue's messages back to their queue in the local
# stack `make run` is serving (infra/redrive.py).
redrive: $(INSTALLED)
	@test -n "$(QUEUE)" || { echo "make redrive needs QUEUE=stripe-connector-events or QUEUE=stripe-connector-sync"; exit 2; }
	$(BIN)/python -m local.redrive "$(QUEUE)"

bench: $(INSTALLED)
	$(BIN)/python -m bench

# Starts its own local stack on free ports; a few minutes.
soak: $(INSTALLED)
	$(BIN)/python -m soak

clean:
	rm -rf $(VENV) .pytest_cache .fuzz .browser build
