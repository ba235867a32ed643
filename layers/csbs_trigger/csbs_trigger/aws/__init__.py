"""The AWS side: Secrets Manager, SNS, DynamoDB and CloudWatch metrics."""
