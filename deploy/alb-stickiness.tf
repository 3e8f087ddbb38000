# AWS Application Load Balancer in front of samlha's SP replicas with
# duration-based stickiness (the affinity strategy, samlsp --store memory):
# the target group and an HTTPS listener that forwards to it. The ALB and the
# replicas' registration (an autoscaling group, or ECS/EKS) are yours.
#
# ALB sets two cookies with the same value: AWSALB, and AWSALBCORS with
# SameSite=None; Secure. A browser withholds AWSALB (no SameSite, so Lax) from
# the IdP's cross-site POST to /saml/acs but sends AWSALBCORS, so the POST
# reaches the replica that began the login. That needs HTTPS at the ALB, and
# nothing in front of it (CloudFront, a WAF rule) may drop AWSALBCORS.
# stickyproxy --cookie-twin imitates this; the lab's sticky-lax-cookie
# scenario shows what happens without it.

variable "vpc_id" {
  description = "VPC of the SP replicas"
  type        = string
}

variable "alb_arn" {
  description = "ARN of the Application Load Balancer"
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the SP's public host name (samlsp --root-url)"
  type        = string
}

variable "sp_port" {
  description = "port each replica listens on (samlsp --listen)"
  type        = number
  default     = 8081
}

variable "stickiness_seconds" {
  description = "lifetime of the AWSALB cookie, 1 s to 7 days; longer than a login takes at the IdP"
  type        = number
  default     = 86400
}

resource "aws_lb_target_group" "samlsp" {
  name        = "samlsp"
  port        = var.sp_port
  protocol    = "HTTP"
  vpc_id      = var.vpc_id
  target_type = "instance" # "ip" for pods (EKS) or awsvpc tasks (ECS)

  # A deregistered replica gets this long to finish its requests; its pinned
  # users are re-pinned to another, where their sessions (in memory) are not.
  deregistration_delay = 30

  stickiness {
    enabled         = true
    type            = "lb_cookie"
    cookie_duration = var.stickiness_seconds
  }

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "samlsp_https" {
  load_balancer_arn = var.alb_arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.samlsp.arn
  }
}
