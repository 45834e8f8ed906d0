"""A Python function for Nimbus (and for AWS Lambda, unchanged): greets whoever the event names."""

import os


def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    name = event.get("name", "world")
    print(f"greeting {name}")
    return {
        "greeting": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "requestId": context.aws_request_id,
        "remainingMs": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
    }
